"""Per-address log rate limit: a connection storm cannot flood the journal.

Every connection logs a line when it connects, is refused and disconnects. A reconnect
storm of thousands of clients a second, or one client that reconnects in a loop, would
write that many lines a second to the journal (and rotate out what an operator needs).
``LogRateLimit.allow(address)`` lets ``lines`` lines per address through per
``window`` seconds (a token bucket, so a burst of ``lines`` passes at once and the
budget refills evenly), counts the rest, and logs one summary per address for what it
held back: at the address's next line that gets through, or at the end of the window.

Memory is bounded: at most ``max_addresses`` buckets, least recently used first out
(what an evicted address had held back still reaches the summary). The clock is
injected.

A budget is one process's, and one tier's: the single process's broker shares its own
with the door; the tree's master keeps one for its door and one for its gate, and each
worker's broker its own, so one address may log up to (workers + 2) budgets (README,
"Limits per process in the tree", says why they are not divided).
"""
from collections import OrderedDict

from twisted.logger import Logger

from mqttd.metrics import Metrics

__all__ = ["LogRateLimit"]

log = Logger()


class _Bucket:
    __slots__ = ("tokens", "stamp", "suppressed")

    def __init__(self, tokens, stamp):
        self.tokens = tokens
        self.stamp = stamp
        self.suppressed = 0


class LogRateLimit:
    """At most ``lines`` log lines per address per ``window`` seconds, then one summary."""

    def __init__(self, clock, lines, window, max_addresses=4096, metrics=None):
        self._clock = clock
        self._lines = lines
        self._window = window
        self._refill = lines / window  # tokens per second
        self._max_addresses = max_addresses
        self._buckets = OrderedDict()  # address -> _Bucket, least recently used first
        self._evicted = 0  # held back from addresses whose buckets were evicted since
        self._flush_call = None
        # Every line held back so far: the registry's mqtt_log_lines_suppressed.
        self.metrics = Metrics() if metrics is None else metrics

    def __len__(self):
        return len(self._buckets)

    def allow(self, address):
        """True if a line about ``address`` may be logged now; else it is counted."""
        now = self._clock.seconds()
        buckets = self._buckets
        bucket = buckets.get(address)
        if bucket is None:
            if len(buckets) >= self._max_addresses:
                _, oldest = buckets.popitem(last=False)
                self._evicted += oldest.suppressed
            buckets[address] = _Bucket(self._lines - 1, now)
            return True
        buckets.move_to_end(address)
        tokens = min(self._lines, bucket.tokens + (now - bucket.stamp) * self._refill)
        bucket.stamp = now
        if tokens >= 1:
            bucket.tokens = tokens - 1
            if bucket.suppressed:
                self._summary(address, bucket)
            return True
        bucket.tokens = tokens
        bucket.suppressed += 1
        self.metrics.mqtt_log_lines_suppressed += 1
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._window, self._flush)
        return False

    def _summary(self, address, bucket):
        log.info("suppressed {count} log lines from {address} (over {lines} per {window} s)",
                 count=bucket.suppressed, address=address, lines=self._lines,
                 window=self._window)
        bucket.suppressed = 0

    def _flush(self):
        """End of a window with lines held back: say how many, per address; forget the
        addresses whose budget is full again (as good as new)."""
        self._flush_call = None
        now = self._clock.seconds()
        buckets = self._buckets
        for address, bucket in list(buckets.items()):
            if bucket.suppressed:
                self._summary(address, bucket)
            elif now - bucket.stamp >= self._window:
                del buckets[address]
        if self._evicted:
            log.info("suppressed {count} log lines from addresses no longer tracked",
                     count=self._evicted)
            self._evicted = 0
