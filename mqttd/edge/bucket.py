"""Token buckets that share one rate, one burst and one clock: connect rates per address.

The door keeps one bucket per client address, thousands at once, so a bucket holds only
its own state (``tokens`` left at ``stamp``) and the policy lives once in
``TokenBuckets``: a reload changes the rate for every address at once and each keeps
what it had (capped to the new burst at its next use). A bucket starts full: ``burst``
takes in one instant pass, the next is refused, and tokens come back at ``rate`` a
second, never more than ``burst``.

Times come from the injected clock (``seconds()``), so tests step it exactly; the
comparisons allow ``EPSILON`` of a token, so a clock stepped by exactly ``1 / rate`` gives
back exactly one token despite binary fractions (1/3 s * 3 is 0.999... in floats).
"""

__all__ = ["TokenBucket", "TokenBuckets"]

EPSILON = 1e-9


class TokenBucket:
    """One address's state: ``tokens`` left as of ``stamp`` (clock seconds)."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens, stamp):
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """``rate`` tokens a second (> 0) up to ``burst`` (>= 1), for any number of buckets."""

    __slots__ = ("_clock", "rate", "burst")

    def __init__(self, clock, rate, burst):
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._clock = clock
        self.rate = float(rate)
        self.burst = burst

    def new(self):
        """A full bucket."""
        return TokenBucket(float(self.burst), self._clock.seconds())

    def take(self, bucket):
        """Take one token from ``bucket``: True if there was one, else False (nothing taken)."""
        now = self._clock.seconds()
        tokens = bucket.tokens + (now - bucket.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket.stamp = now
        if tokens >= 1.0 - EPSILON:
            bucket.tokens = tokens - 1.0 if tokens >= 1.0 else 0.0
            return True
        bucket.tokens = tokens
        return False

    def is_full(self, bucket):
        """Whether ``bucket`` has refilled to ``burst`` by now (as good as a new one)."""
        tokens = bucket.tokens + (self._clock.seconds() - bucket.stamp) * self.rate
        return tokens >= self.burst - EPSILON
