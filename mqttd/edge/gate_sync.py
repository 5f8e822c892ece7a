"""The gate follows the store: changes made by the operator's CLI apply within a tick.

The store keeps one change counter (``version()``), raised by triggers on every change
of accounts, tokens and bans, so a running gate needs one cheap read per
``auth.reload_interval`` to know whether anything changed. When it did: the gate forgets
its cached tokens, reloads the bans, looks up again the tokens of its live connections
(``lookup_tokens``, one query for all of them) and kicks every live connection that is
now refused: revoked token, inactive account, or a ban that matches it.

One poll at a time: the next is scheduled only when one has ended, so a slow store
delays polls and never stacks them. A poll that fails is logged (the first of a run
with its traceback, then counted in ``edge_gate_poll_failures`` until one succeeds again)
and the next tick tries again; the version is taken only from a poll that applied it.
"""
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger

__all__ = ["GateSync"]

log = Logger()


class GateSync:
    """Polls ``store`` (``version``, ``bans``, ``lookup_tokens``) every ``interval``
    seconds of ``clock`` for ``gate``. ``start()`` polls at once; its Deferred fires
    when that first poll ended (applied or failed). ``stop()``'s fires once no poll is
    in flight."""

    def __init__(self, clock, store, gate, metrics, interval):
        self._clock = clock
        self._store = store
        self._gate = gate
        self._metrics = metrics
        self._interval = interval
        self._version = None  # the store version the gate is in step with
        self._call = None  # the next tick
        self._polling = None  # the poll in flight (a Deferred), or None
        self._running = False
        self._failures = 0  # polls failed in a row

    @property
    def version(self):
        """The store version last applied (None before the first poll succeeded)."""
        return self._version

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
        version = await maybeDeferred(store.version)
        if version != self._version:
            mark = gate.reloading()
            gate.reload_bans(await maybeDeferred(store.bans), mark)
            tokens = sorted(gate.live_tokens())
            records = await maybeDeferred(store.lookup_tokens, tokens) if tokens else {}
            gate.recheck(records)
            self._version = version
            self._metrics.edge_gate_reloads += 1
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
