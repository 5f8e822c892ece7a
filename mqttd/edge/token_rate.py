"""The auth rate limit per token: at most ``burst`` CONNECT attempts in any window of
``burst / rate`` seconds, checked before any lookup.

With the defaults (4 a second, burst 4) a token authenticates at most 4 times in any one
second: the 5th attempt within one second of the first is refused, however the five
are spread (at 0, 0.2, 0.4, 0.6 and 0.8 s the 5th is refused; a token bucket would have
let it through, refilled by then). A token keeps the times of its last ``burst``
attempts let through, and an attempt is refused while the oldest of them is less than
``burst / rate`` seconds ago: one exactly that long after it passes (the window is
half open, ``[t, t + burst / rate)``; the comparison allows ``EPSILON``, a
microsecond, so a clock stepped by exactly a second is a second although unix seconds
in a float are exact only to about a quarter of a microsecond).

A refused attempt is not counted: it cost only this check (no lookup), and counting
it would lock a device out for as long as it retries faster than the rate, however
long that is; not counted, a device in a reconnect loop still gets ``burst`` attempts a
window, and no more, which is the limit.

Keyed by the token's hash (64 characters whatever the token's length), so memory is
bounded in bytes: a key holds at most ``burst`` times (a tuple), and at most
``max_tokens`` keys are kept, fewer if ``max_bytes / (KEY_COST + 32 * burst)`` is less
(100,000 at the defaults, about 37 MB), the least recently used first out; a key whose
newest attempt is out of the window goes first (it is as good as a new one). An evicted
key comes back empty, which only a storm of that many other tokens in between earns.

SIGHUP may change the rate and the burst (``reconfigure``): every token keeps its
times, and the new window and burst judge its next attempt, so a lower limit holds from
the next attempt on (a token that used 2 attempts a moment ago is refused at once under
a burst of 1).
"""
from collections import OrderedDict

__all__ = ["EPSILON", "KEY_COST", "MAX_RATE_BYTES", "MAX_RATE_TOKENS", "TokenRate"]

MAX_RATE_TOKENS = 100_000
MAX_RATE_BYTES = 40 * 1024 * 1024
KEY_COST = 250
"""What a key costs besides its times: the 64-character hash, its slot in the ordered
dict and the tuple (each time is 32 bytes more: a float and its place in the tuple)."""
EPSILON = 1e-6


class TokenRate:
    """``allow(key)``: whether one more attempt with the token hashed to ``key`` may go
    on now (it is counted if so). ``rate`` 0: every attempt may."""

    def __init__(self, clock, rate, burst, max_tokens=MAX_RATE_TOKENS,
                 max_bytes=MAX_RATE_BYTES):
        self._clock = clock
        self._max_tokens = max_tokens
        self._max_bytes = max_bytes
        self._by_key = OrderedDict()  # token hash -> its last times, least recently used first
        self.reconfigure(rate, burst)

    def reconfigure(self, rate, burst):
        """``rate`` a second (0: off) and ``burst`` from the next attempt on."""
        self._burst = burst
        self._window = burst / rate if rate > 0 else None
        by_key = self._by_key
        if self._window is None:
            by_key.clear()
            return
        self._max_keys = max(1, min(self._max_tokens,
                                    self._max_bytes // (KEY_COST + 32 * burst)))
        while len(by_key) > self._max_keys:
            by_key.popitem(last=False)

    def __len__(self):
        """Tokens whose attempts are kept now."""
        return len(self._by_key)

    def allow(self, key):
        window = self._window
        if window is None:
            return True
        now = self._clock.seconds()
        by_key = self._by_key
        burst = self._burst
        times = by_key.get(key)
        if times is None:
            self._sweep(now)
            by_key[key] = (now,)
            return True
        by_key.move_to_end(key)
        if len(times) >= burst and now - times[-burst] < window - EPSILON:
            return False
        by_key[key] = (times + (now,))[-burst:]
        return True

    def _sweep(self, now):
        """Room for one key more: drop those out of the window, then past the cap the
        least recently used."""
        by_key = self._by_key
        window = self._window
        while by_key:
            key, times = next(iter(by_key.items()))
            if len(by_key) < self._max_keys and now - times[-1] < window - EPSILON:
                return
            del by_key[key]
