"""Who connects how often: connects per address over the last minute, for the report.

The door knows how many connections each address holds open, not how fast it opens
them: its connect-rate buckets exist only for addresses under the limit (not the
allowlisted, not with the limit off) and hold tokens, not counts. A storm from one
address behind the allowlist, or one the limit refuses, is what an operator looks for
first, so every socket the door sees at accept is counted here (``seen``, let in or
refused), in ``STEP``-second buckets over ``WINDOW`` seconds of the clock.

Bounded: a bucket counts at most ``max_addresses`` addresses; past that, new addresses
in it are summed in ``others`` (a scan from a million addresses costs one counter, and
the addresses already counted, the ones seen first, keep counting). Memory is at most
``WINDOW / STEP * max_addresses`` entries of about 150 bytes: 6 MB at the defaults.
"""
import heapq
from collections import deque

__all__ = ["ConnectRates", "MAX_ADDRESSES", "STEP", "WINDOW"]

WINDOW = 60.0
STEP = 10.0
MAX_ADDRESSES = 10_000


class ConnectRates:
    def __init__(self, clock, window=WINDOW, step=STEP, max_addresses=MAX_ADDRESSES):
        self._clock = clock
        self._step = step
        self._buckets = max(1, int(round(window / step)))
        self._max = max_addresses
        self._since = clock.seconds()  # a window younger than WINDOW covers only this much
        self._window = deque()  # (bucket index, {address: connects}, [others]), oldest first

    @property
    def window(self):
        return self._buckets * self._step

    def seen(self, address):
        """One socket from ``address`` at accept (the door's ``watch``)."""
        index = int(self._clock.seconds() // self._step)
        window = self._window
        if not window or window[-1][0] != index:
            window.append((index, {}, [0]))
            while window[0][0] <= index - self._buckets:
                window.popleft()
        counts = window[-1][1]
        count = counts.get(address)
        if count is not None:
            counts[address] = count + 1
        elif len(counts) < self._max:
            counts[address] = 1
        else:
            window[-1][2][0] += 1

    def totals(self):
        """({address: connects within the window}, connects of addresses not counted
        one by one, seconds the figures cover)."""
        now = self._clock.seconds()
        index = int(now // self._step)
        totals, others = {}, 0
        for bucket, counts, rest in self._window:
            if bucket <= index - self._buckets:
                continue
            for address, count in counts.items():
                totals[address] = totals.get(address, 0) + count
            others += rest[0]
        # The window is whole buckets, the current one partly gone by; less at start.
        covered = min(self.window - self._step + (now - index * self._step),
                      now - self._since)
        return totals, others, covered

    def top(self, limit):
        """The ``limit`` busiest addresses: [(address, connects, connects a second)],
        most first, and the connects of uncounted addresses."""
        totals, others, covered = self.totals()
        busiest = heapq.nlargest(limit, totals.items(), key=lambda item: (item[1], item[0]))
        per_second = max(covered, 1.0)
        return [(address, count, count / per_second) for address, count in busiest], others
