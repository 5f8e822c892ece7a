"""The gate follows the store: changes made by the operator's CLI apply within a tick.

The store keeps two change counters (``versions()``), raised by triggers: ``tokens`` on
every change of accounts and tokens, ``bans`` on every change of bans. So a running
gate needs one cheap read per ``auth.reload_interval`` to know whether anything changed,
and what. Accounts or tokens changed: the gate forgets its cached tokens, known and
unknown, and looks up again the tokens of its live connections (``lookup_tokens``, one
query for all of them). Bans changed: it reloads the bans, and nothing else, so the
bans the flapping detector writes (one a second in a storm of flappers) leave the token
caches alone and a storm of bad tokens beside it keeps being answered from memory.
Either way it kicks every live connection now refused: revoked token, inactive
account, or a ban that matches it.

One poll at a time: the next is scheduled only when one has ended, so a slow store
delays polls and never stacks them. A poll that fails is logged (the first of a run
with its traceback, then counted in ``edge_gate_poll_failures`` until one succeeds again)
and the next tick tries again; the versions are taken only from a poll that applied them.
"""
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger

__all__ = ["GateSync"]

log = Logger()


class GateSync:
    """Polls ``store`` (``versions``, ``bans``, ``lookup_tokens``) every ``interval``
    seconds of ``clock`` for ``gate``. ``start()`` polls at once; its Deferred fires
    when that first poll ended (applied or failed). ``stop()``'s fires once no poll is
    in flight."""

    def __init__(self, clock, store, gate, metrics, interval):
        self._clock = clock
        self._store = store
        self._gate = gate
        self._metrics = metrics
        self._interval = interval
        self._versions = None  # the StoreVersions the gate is in step with
        self._call = None  # the next tick
        self._polling = None  # the poll in flight (a Deferred), or None
        self._running = False
        self._failures = 0  # polls failed in a row

    @property
    def versions(self):
        """The StoreVersions last applied (None before the first poll succeeded)."""
        return self._versions

    def start(self):
        self._running = True
        if self._polling is None and self._call is None:
            self._tick()
        return self._after_poll()

    def stop(self):
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self._after_poll()

    def _after_poll(self):
        """A Deferred that fires (None) once the poll in flight, if any, ended."""
        if self._polling is None:
            return succeed(None)
        d = Deferred()
        self._polling.addBoth(lambda _: d.callback(None))
        return d

    def _tick(self):
        self._call = None
        polling = ensureDeferred(self._poll())
        polling.addErrback(self._failed)
        polling.addBoth(self._polled)
        if not polling.called:
            self._polling = polling

    def _polled(self, _):
        self._polling = None
        if self._running and self._call is None:
            self._call = self._clock.callLater(self._interval, self._tick)

    async def _poll(self):
        gate, store = self._gate, self._store
        gate.prune()
        versions = await maybeDeferred(store.versions)
        last = self._versions
        if versions != last:
            tokens_moved = last is None or versions.tokens != last.tokens
            bans_moved = last is None or versions.bans != last.bans
            records = {}
            if tokens_moved:
                gate.forget_tokens()
            if bans_moved:
                mark = gate.reloading_bans()
                gate.reload_bans(await maybeDeferred(store.bans), mark)
            if tokens_moved:
                tokens = sorted(gate.live_tokens())
                if tokens:
                    records = await maybeDeferred(store.lookup_tokens, tokens)
            gate.recheck(records)
            self._versions = versions
            reloads = self._metrics.edge_gate_reloads
            reloads["tokens"] += tokens_moved
            reloads["bans"] += bans_moved
        if self._failures:
            log.info("the gate reads the accounts store again, after {count} failed polls",
                     count=self._failures)
            self._failures = 0

    def _failed(self, failure):
        self._failures += 1
        self._metrics.edge_gate_poll_failures += 1
        if self._failures == 1:
            log.failure("the gate could not read the accounts store's changes "
                        "(retried every {interval} s)", failure, interval=self._interval)
