"""Where an OFFLINE persistent session's cursor may go, and which of its queued keys a
save still has to look up.

A save's cursor is the lowest of the newest rowid it read, the rowid before the oldest
message the session still holds (a lookup of its queued keys), and, offline, a FLOOR:
the newest rowid read just after it went offline (a restored session: its saved
cursor). Nothing committed after it went offline was delivered to it, so holding the
cursor there loses nothing that is still on its way (forwarded from another worker,
behind a slow ingest answer, cut off by a stop) and owes nothing twice.

An offline queue only grows at its tail, so once a save has written cursor C over the
first N queued messages, C is the next save's floor and only the keys queued after
those N need a lookup: a session with a long queue that keeps receiving costs its new
messages per save, not its whole queue. An "epoch" per session makes a save's
bookkeeping apply only if the session did not come online (and leave) meanwhile.
"""
from itertools import islice

import attrs

__all__ = ["OfflineCursors", "OfflineSnap"]


@attrs.frozen
class OfflineSnap:
    """What one save took of one offline session: to record once it is written."""

    session: object
    epoch: int  # its offline period then
    covered: int  # queued messages then (the cursor written accounts for them)


class OfflineCursors:
    """Floors and covered queue lengths of the offline sessions of one broker."""

    def __init__(self):
        self._floors = {}  # session -> the rowid its cursor stays at or below
        self._covered = {}  # session -> queued messages the floor already accounts for
        self._epochs = {}  # session -> times it went offline (a save's snap checks it)

    def restored(self, session, cursor):
        self._floors[session] = cursor

    def went_offline(self, session):
        """Forget the last offline period's bookkeeping; the caller reads the newest
        rowid and hands it to ``floor`` (None until then: the save's own read, made
        before this one, is the bound)."""
        self._floors.pop(session, None)
        self._covered.pop(session, None)
        self._epochs[session] = self._epochs.get(session, 0) + 1

    def floor(self, session, rowid):
        if session.protocol is None:
            self._floors[session] = rowid

    def forget(self, session):
        self._floors.pop(session, None)
        self._covered.pop(session, None)
        self._epochs.pop(session, None)

    def snapshot(self, session, queue):
        """(floor or None, the non-retained keys a save must look up, OfflineSnap or
        None) for ``session`` holding ``queue`` now."""
        if session.protocol is not None:
            self._floors.pop(session, None)  # online again: its cursor follows its acks
            self._covered.pop(session, None)
            return None, _keys(queue, 0), None
        floor = self._floors.get(session)
        covered = self._covered.get(session, 0) if floor is not None else 0
        snap = OfflineSnap(session, self._epochs.get(session, 0), len(queue) if queue else 0)
        return floor, _keys(queue, covered), snap

    def written(self, snaps, cursors):
        """A save wrote ``cursors`` (one per snap; None for online sessions)."""
        for snap, cursor in zip(snaps, cursors):
            if snap is None:
                continue
            session = snap.session
            if session.protocol is not None or self._epochs.get(session, 0) != snap.epoch:
                continue
            floor = self._floors.get(session)
            self._floors[session] = cursor if floor is None else min(floor, cursor)
            self._covered[session] = snap.covered


def _keys(queue, skip):
    if not queue:
        return ()
    return tuple(m.key for m, _, retain in islice(queue, skip, None) if not retain)
