"""Tokens as the gate knows them: a bounded cache in front of the store, one lookup at
a time per token, and a short memory of tokens that do not exist.

A storm of CONNECTs with bad tokens must not become a storm of SQLite reads: an unknown
token is remembered for ``negative_ttl`` seconds (``is_unknown``), and attempts that
arrive while its lookup is in flight wait for that one lookup instead of starting their
own. Known tokens (active or not) are kept, up to ``size`` of them, least recently used
first out. ``clear()`` (after any change of accounts or tokens; a ban is no such
change) forgets both; a lookup that was in flight across a clear may have read the old
rows, so it is made again for whoever waits on it (a change a second at most, so this
ends).

Keys are token hashes (64 characters), values ``TokenRecord``s or expiry times, so memory
is bounded in bytes: about 400 bytes a known token (40 MB at the default 100,000), 150
an unknown one (at most ``NEGATIVE_SIZE``, 15 MB), and one waiting Deferred per CONNECT
in flight. A store failure reaches every waiter as the failure, and is never cached.
"""
from collections import OrderedDict

from twisted.internet.defer import Deferred, maybeDeferred, succeed

__all__ = ["NEGATIVE_SIZE", "TokenCache"]

NEGATIVE_SIZE = 100_000


class TokenCache:
    """``store`` has ``lookup_token(token) -> Deferred[TokenRecord | None]``."""

    def __init__(self, clock, store, metrics, size, negative_ttl,
                 negative_size=NEGATIVE_SIZE):
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._size = size
        self._negative_ttl = negative_ttl
        self._negative_size = negative_size
        self._known = OrderedDict()  # token hash -> TokenRecord, least recently used first
        self._unknown = OrderedDict()  # token hash -> until (clock seconds), oldest first
        self._waiting = {}  # token hash -> [Deferred], while its lookup is in flight
        self._generation = 0  # raised by clear(): a lookup started before is stale

    def is_unknown(self, key):
        """Whether the token hashed to ``key`` was looked up and not found lately."""
        until = self._unknown.get(key)
        if until is None:
            return False
        if self._clock.seconds() < until:
            self._metrics.edge_gate_negative_hits += 1
            return True
        del self._unknown[key]
        return False

    def lookup(self, token, key):
        """A Deferred ``TokenRecord`` (None: no such token) for ``token``."""
        record = self._known.get(key)
        if record is not None:
            self._known.move_to_end(key)
            return succeed(record)
        d = Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[key] = [d]
        self._ask(token, key)
        return d

    def clear(self):
        """Forget every token, known and unknown (accounts or tokens changed)."""
        self._generation += 1
        self._known.clear()
        self._unknown.clear()

    def __len__(self):
        """Tokens remembered, known and unknown."""
        return len(self._known) + len(self._unknown)

    def _ask(self, token, key):
        self._metrics.edge_gate_lookups += 1
        generation = self._generation
        d = maybeDeferred(self._store.lookup_token, token)
        d.addCallbacks(self._found, self._failed, callbackArgs=(token, key, generation),
                       errbackArgs=(key,))

    def _found(self, record, token, key, generation):
        if generation != self._generation:
            self._ask(token, key)  # read before a change: read again for the waiters
            return
        if record is None:
            self._remember_unknown(key)
        else:
            self._remember(key, record)
        for d in self._waiting.pop(key):
            d.callback(record)

    def _failed(self, failure, key):
        for d in self._waiting.pop(key):
            d.errback(failure)

    def _remember(self, key, record):
        if self._size <= 0:
            return
        known = self._known
        known[key] = record
        known.move_to_end(key)
        while len(known) > self._size:
            known.popitem(last=False)

    def _remember_unknown(self, key):
        if self._negative_ttl <= 0:
            return
        now = self._clock.seconds()
        unknown = self._unknown
        unknown.pop(key, None)
        unknown[key] = now + self._negative_ttl  # one TTL: the oldest expires first
        while unknown and (len(unknown) > self._negative_size
                           or next(iter(unknown.values())) <= now):
            unknown.popitem(last=False)
