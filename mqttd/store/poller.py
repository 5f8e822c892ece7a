"""A poll of the store on a clock, one at a time: how the gate and the trace rules follow SQLite.

Not a ``LoopingCall``: the next poll is scheduled ``interval`` seconds after the last one
ENDED, so a slow store delays polls and never stacks them, nor makes up for the ticks
it missed; ``poll_now()`` looks at once (a change was just made here) unless a poll is
in flight already; and ``stop()`` answers once the poll in flight, if any, has ended, so
its owner can close the store after it. A poll that fails is handed to ``failed`` with
how many failed in a row, the first success after them to ``recovered``: the owner
logs the first of a run and counts the rest, and the next tick tries again.
"""
from twisted.internet.defer import Deferred, maybeDeferred, succeed

__all__ = ["GuardedPoll"]


class GuardedPoll:
    """Calls ``poll()`` (a value, a Deferred or a coroutine) every ``interval`` seconds
    of ``clock`` once ``start()``-ed; ``failed(failure, run)`` for each poll that fails
    (``run``: failed in a row, 1 for the first), ``recovered(run)`` when one succeeds
    after a run of failures."""

    def __init__(self, clock, interval, poll, failed, recovered):
        self._clock = clock
        self._interval = interval
        self._poll = poll
        self._failed = failed
        self._recovered = recovered
        self._call = None  # the next tick
        self._polling = None  # the poll in flight (a Deferred), or None
        self._running = False
        self._failures = 0  # polls failed in a row

    @property
    def running(self):
        return self._running

    def start(self):
        """Poll at once (unless a poll is in flight or due already): a Deferred that
        fires (None) once that poll ended, applied or failed."""
        self._running = True
        if self._polling is None and self._call is None:
            self._tick()
        return self._after_poll()

    def stop(self):
        """No more polls: a Deferred that fires (None) once no poll is in flight."""
        self._running = False
        self._cancel()
        return self._after_poll()

    def poll_now(self):
        """Poll at once instead of at the next tick, unless one is in flight."""
        if self._running and self._polling is None:
            self._cancel()
            self._tick()

    def _cancel(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _after_poll(self):
        if self._polling is None:
            return succeed(None)
        d = Deferred()
        self._polling.addBoth(lambda _: d.callback(None))
        return d

    def _tick(self):
        self._call = None
        polling = maybeDeferred(self._poll)
        polling.addCallbacks(self._succeeded, self._failed_poll)
        polling.addBoth(self._polled)
        if not polling.called:
            self._polling = polling

    def _succeeded(self, _):
        run, self._failures = self._failures, 0
        if run:
            self._recovered(run)

    def _failed_poll(self, failure):
        self._failures += 1
        self._failed(failure, self._failures)

    def _polled(self, _):
        self._polling = None
        if self._running and self._call is None:
            self._call = self._clock.callLater(self._interval, self._tick)
