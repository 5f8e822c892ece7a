"""Persistent sessions follow their client ids when the number of brokers changes.

Each broker keeps its sessions in DATA_DIR/sessions-<slot>.db (slot 0: the one process;
1..N: the tree's workers), and a client id reaches the slot its hash picks among the
configured ones (``mqttd.edge.balancer``). Change ``server.workers`` and some ids hash
to another slot; their sessions must move with them, or those clients come back to an
empty session and everything they were owed is gone. Its default is the host's cores,
so it changes on its own: the upgrade from the one process (everything in slot 0), a
host given more cores, a data directory copied to another machine.

Run once at start, before any broker opens its file (synchronously, as the database is
prepared). Each move commits in the target file first and deletes from the source after:
a crash between leaves a copy in both, and the next start keeps the newer one (by
``saved_at``; the target's on a tie) in the right file. A session's cursor is a rowid
of mqttd.db's ``messages``, the same for every slot, so it moves as it is.
"""
import os
import re

from mqttd.store.sessions import connect_sessions, sessions_filename

__all__ = ["rehome_sessions"]

_TABLES = ("sessions", "subscriptions", "inflight")
_FILE = re.compile(r"sessions-(\d+)\.db")


def _session_files(data_dir):
    """{slot: path} of every sessions file in ``data_dir``."""
    found = {}
    for name in os.listdir(data_dir):
        match = _FILE.fullmatch(name)
        if match:
            found[int(match.group(1))] = os.path.join(data_dir, name)
    return found


def rehome_sessions(data_dir, home):
    """Move each session of DATA_DIR/sessions-*.db whose ``home(client_id)`` (the slot
    it now reaches) is not its file's slot to that slot's file; return how many moved."""
    moved = 0
    for slot, path in sorted(_session_files(data_dir).items()):
        source = connect_sessions(path)
        try:
            strays = {}
            for (client_id,) in source.execute("SELECT client_id FROM sessions"):
                target = home(client_id)
                if target != slot:
                    strays.setdefault(target, []).append(client_id)
            for target, client_ids in sorted(strays.items()):
                target_path = os.path.join(data_dir, sessions_filename(target))
                connect_sessions(target_path).close()  # there, with the current schema
                _move(source, target_path, client_ids)
                moved += len(client_ids)
        finally:
            source.close()
    return moved


def _move(source, target_path, client_ids):
    """``client_ids``' rows from ``source`` into the file at ``target_path``, then out of
    ``source``: two commits, the target's first."""
    source.execute("ATTACH DATABASE ? AS target", (target_path,))
    try:
        source.execute("CREATE TEMP TABLE moving (client_id TEXT PRIMARY KEY)")
        source.executemany("INSERT INTO temp.moving VALUES (?)", [(c,) for c in client_ids])
        # Copied: those the target lacks, or holds an older save of (a leftover).
        source.execute("""
            CREATE TEMP TABLE copying AS
            SELECT m.client_id FROM temp.moving AS m JOIN main.sessions AS s USING (client_id)
            LEFT JOIN target.sessions AS t USING (client_id)
            WHERE t.client_id IS NULL OR t.saved_at < s.saved_at""")
        source.execute("BEGIN IMMEDIATE")
        for table in _TABLES:
            source.execute(f"DELETE FROM target.{table} "
                           "WHERE client_id IN (SELECT client_id FROM temp.copying)")
            source.execute(f"INSERT INTO target.{table} SELECT * FROM main.{table} "
                           "WHERE client_id IN (SELECT client_id FROM temp.copying)")
        source.execute("COMMIT")
        source.execute("BEGIN IMMEDIATE")
        for table in _TABLES:
            source.execute(f"DELETE FROM main.{table} "
                           "WHERE client_id IN (SELECT client_id FROM temp.moving)")
        source.execute("COMMIT")
    finally:
        if source.in_transaction:
            source.execute("ROLLBACK")
        source.execute("DROP TABLE IF EXISTS temp.moving")
        source.execute("DROP TABLE IF EXISTS temp.copying")
        source.execute("DETACH DATABASE target")
