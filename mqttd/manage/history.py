"""Counters over the last minute, hour and day, on the master's clock: refusals by limit.

The registry's counters only grow (``mqttd.manage.tree_metrics`` keeps them so across
restarts), so "how many in the last hour" is the total now minus the total an hour ago.
``CounterHistory`` keeps the totals it read (``read()``: {series: total}) every
``FINE`` seconds for the last hour and every ``COARSE`` seconds for the last day, and
answers ``since(seconds)`` with the growth since the newest sample at least that old.
The answer says the span it really covers: up to one step more than asked (a sample
every 10 s makes "the last minute" 60 to 70 s), or less while the appliance is younger
than the span.

Memory: 361 + 289 samples of the series that ever moved (a few dozen refusal reasons).
A read that raises is logged and skipped: a LoopingCall that raised would stop.
"""
from collections import deque

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["COARSE", "CounterHistory", "FINE"]

log = Logger()

FINE = 10.0
COARSE = 300.0
_HOUR = 3600.0
_DAY = 86400.0


class CounterHistory(Service):
    """``read()`` -> {series: total}; ``since(seconds)`` -> (growth, seconds covered)."""

    def __init__(self, clock, read, fine=FINE, coarse=COARSE):
        self._clock = clock
        self._read = read
        self._fine_step, self._coarse_step = fine, coarse
        self._fine = deque(maxlen=int(_HOUR / fine) + 1)
        self._coarse = deque(maxlen=int(_DAY / coarse) + 1)
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def startService(self):
        super().startService()
        self._loop.start(self._fine_step, now=True)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def sample(self):
        """Read the totals now (the loop does, every ``fine`` seconds)."""
        try:
            totals = dict(self._read())
        except Exception:
            log.failure("reading the counters for their history failed")
            return
        now = self._clock.seconds()
        self._fine.append((now, totals))
        if not self._coarse or now - self._coarse[-1][0] >= self._coarse_step:
            self._coarse.append((now, totals))

    def since(self, seconds):
        """({series: growth within the last ``seconds``} of the series that grew, the
        seconds that covers), from the totals read now."""
        now = self._clock.seconds()
        current = dict(self._read())
        base = self._base(now - seconds)
        if base is None:
            return {}, 0.0
        at, totals = base
        grown = {}
        for key, value in current.items():
            growth = value - totals.get(key, 0)
            if growth > 0:
                grown[key] = growth
        return grown, now - at

    def _base(self, cutoff):
        """The newest sample taken at or before ``cutoff``, else the oldest one kept."""
        best = None
        for samples in (self._fine, self._coarse):
            for at, totals in reversed(samples):
                if at <= cutoff:
                    if best is None or at > best[0]:
                        best = (at, totals)
                    break
        if best is not None:
            return best
        oldest = [samples[0] for samples in (self._fine, self._coarse) if samples]
        return min(oldest, key=lambda sample: sample[0]) if oldest else None
