"""Many deadlines of one fixed length, on one timer: offline sessions, unfinished packets.

Every deadline here is "``timeout`` seconds after it was added", so adding in time order
keeps the set sorted by deadline: an OrderedDict is the queue, its head is the next to
expire, and adding, removing or renewing an entry costs O(1). One DelayedCall, armed for
the head, serves all of them: 10,000 idle sessions or stalled connections cost 10,000
dict entries, not 10,000 timers in the reactor's heap. The timer is lazy: when its head
is removed it still fires at the old time, finds nothing due and re-arms for the new head.
"""
from collections import OrderedDict

from twisted.logger import Logger

__all__ = ["Deadlines"]

log = Logger()


class Deadlines:
    """Keys that expire ``timeout`` seconds after ``add``; ``on_expired(key)`` is called
    for each, oldest first, once it is due (and it is no longer held here by then).

    ``clock`` is an IReactorTime. Keys are hashed by identity (sessions, connections).
    """

    __slots__ = ("_clock", "timeout", "_on_expired", "_due", "_timer")

    def __init__(self, clock, timeout, on_expired):
        self._clock = clock
        self.timeout = timeout
        self._on_expired = on_expired
        self._due = OrderedDict()  # key -> deadline, oldest first
        self._timer = None

    def __len__(self):
        return len(self._due)

    def __contains__(self, key):
        return key in self._due

    def add(self, key, since=None):
        """Start (or restart) ``key``'s deadline: ``timeout`` seconds from now, or from
        ``since`` (a time in the past: a session restored at start; add those oldest
        first, before any other, so the queue stays in deadline order)."""
        due = self._due
        now = self._clock.seconds()
        deadline = (now if since is None else since) + self.timeout
        if key in due:
            due.move_to_end(key)
        due[key] = deadline
        if self._timer is None:
            self._timer = self._clock.callLater(max(deadline - now, 0.0), self._fire)

    def deadline(self, key):
        """When ``key`` expires, or None if it is not held."""
        return self._due.get(key)

    def discard(self, key):
        """Forget ``key`` (if held): it will not expire."""
        self._due.pop(key, None)

    def oldest(self):
        """The key that expires first, or None."""
        for key in self._due:
            return key
        return None

    def _fire(self):
        self._timer = None
        due = self._due
        now = self._clock.seconds()
        while due:
            key, deadline = next(iter(due.items()))
            if deadline > now:
                break
            del due[key]
            try:
                self._on_expired(key)  # may add keys again: they are due later than now
            except Exception:
                # One key that breaks must not stop the others from expiring, ever.
                log.failure("expiring {key!r} failed", key=key)
        if self._timer is not None:  # armed by an add() above, maybe later than the head
            self._timer.cancel()
            self._timer = None
        if due:
            deadline = next(iter(due.values()))
            self._timer = self._clock.callLater(max(deadline - now, 0.0), self._fire)
