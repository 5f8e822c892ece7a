"""The auth rate limit per token: CONNECT attempts a second, checked before any lookup.

A device that reconnects in a loop, or a script trying a stolen token from many places,
costs one bucket check per attempt and nothing more: over ``rate`` a second (after a
burst of ``burst``) the attempt is refused before the caches or the store are asked.
With the defaults (4 a second, burst 4) the 4th attempt in one instant passes, the 5th
is refused, and one more passes every quarter second.

Buckets are keyed by the token's hash (64 characters whatever the token's length), so
memory is bounded in bytes: at most ``max_tokens`` buckets (about 250 bytes each, 25 MB
at the default 100,000), least recently used first out, and a bucket that refilled is
forgotten first (it is as good as a new one). An evicted bucket comes back full, which
only a storm of ``max_tokens`` other tokens in between earns.

SIGHUP may change the rate and the burst (``reconfigure``): every bucket keeps what it
had, capped to the new burst at its next use (as the door's per-address buckets are),
so a lower limit holds from the next attempt on.
"""
from collections import OrderedDict

from mqttd.edge.bucket import TokenBuckets

__all__ = ["MAX_RATE_TOKENS", "TokenRate"]

MAX_RATE_TOKENS = 100_000


class TokenRate:
    """``allow(key)``: whether one more attempt with the token hashed to ``key`` may go
    on now. ``rate`` 0: every attempt may."""

    def __init__(self, clock, rate, burst, max_tokens=MAX_RATE_TOKENS):
        self._clock = clock
        self._max_tokens = max_tokens
        self._by_key = OrderedDict()  # token hash -> TokenBucket, least recently used first
        self.reconfigure(rate, burst)

    def reconfigure(self, rate, burst):
        """``rate`` a second (0: off) and ``burst`` from the next attempt on."""
        self._buckets = TokenBuckets(self._clock, rate, burst) if rate > 0 else None
        if self._buckets is None:
            self._by_key.clear()

    def __len__(self):
        return len(self._by_key)

    def allow(self, key):
        buckets = self._buckets
        if buckets is None:
            return True
        by_key = self._by_key
        bucket = by_key.get(key)
        if bucket is None:
            self._sweep()
            bucket = by_key[key] = buckets.new()
        else:
            by_key.move_to_end(key)
        return buckets.take(bucket)

    def _sweep(self):
        """Room for one bucket more: drop the refilled oldest, and past the cap the oldest."""
        by_key = self._by_key
        while by_key:
            key, bucket = next(iter(by_key.items()))
            if len(by_key) < self._max_tokens and not self._buckets.is_full(bucket):
                return
            del by_key[key]
