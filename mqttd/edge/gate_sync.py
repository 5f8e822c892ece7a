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

One poll at a time (``mqttd.store.poller``): the next is scheduled only when one has
ended, so a slow store delays polls and never stacks them. A poll that fails is logged
(the first of a run with its traceback, then counted in ``edge_gate_poll_failures``
until one succeeds again) and the next tick tries again; the versions are taken only from a poll that applied them.
"""
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from mqttd.store.poller import GuardedPoll

__all__ = ["GateSync"]

log = Logger()


class GateSync:
    """Polls ``store`` (``versions``, ``bans``, ``lookup_tokens``) every ``interval``
    seconds of ``clock`` for ``gate``. ``start()`` polls at once; its Deferred fires
    when that first poll ended (applied or failed). ``stop()``'s fires once no poll is
    in flight."""

    def __init__(self, clock, store, gate, metrics, interval):
        self._store = store
        self._gate = gate
        self._metrics = metrics
        self._interval = interval
        self._versions = None  # the StoreVersions the gate is in step with
        self._poller = GuardedPoll(clock, interval, self._poll, self._failed,
                                   self._recovered)

    @property
    def versions(self):
        """The StoreVersions last applied (None before the first poll succeeded)."""
        return self._versions

    def start(self):
        return self._poller.start()

    def stop(self):
        return self._poller.stop()

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

    def _recovered(self, run):
        log.info("the gate reads the accounts store again, after {count} failed polls",
                 count=run)

    def _failed(self, failure, run):
        self._metrics.edge_gate_poll_failures += 1
        if run == 1:
            log.failure("the gate could not read the accounts store's changes "
                        "(retried every {interval} s)", failure, interval=self._interval)
