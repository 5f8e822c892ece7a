"""Become the owner of the data dir before touching its database.

The packaged service runs as the ``mqttd`` user, and SQLite makes the -wal and -shm
files as whoever opens the database first. An operator running ``mqttd tokens add`` as
root would leave them root-owned, and the service could then no longer open its own
database. So a root CLI switches to the data dir's owner (its groups, its primary
group, then its uid: in that order, since only root may change groups) before it opens
anything there.
"""
import os
import pwd

__all__ = ["become_owner_of"]


def become_owner_of(path):
    """If running as root and ``path`` (which exists) belongs to another user, become
    that user for good; the uid switched to, or None if nothing changed."""
    if os.geteuid() != 0:
        return None
    owner = os.stat(path)
    if owner.st_uid == 0:
        return None
    try:
        entry = pwd.getpwuid(owner.st_uid)
    except KeyError:  # a uid with no name: only the directory's group
        gid = owner.st_gid
        os.setgroups([])
    else:
        gid = entry.pw_gid
        os.initgroups(entry.pw_name, gid)
    os.setgid(gid)
    os.setuid(owner.st_uid)
    return owner.st_uid
