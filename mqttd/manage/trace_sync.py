"""The trace rules follow SQLite: ``mqttd trace add`` applies within a tick.

Why SQLite and not the master's HTTP port: the rules then need what every other operator
change needs (write access to the data dir: the service user or root; the HTTP port is
unauthenticated and loopback-wide), they work on a stopped appliance and survive a
restart (a rule lasts until its ``until``), and ``mqttd trace`` is built like
``mqttd bans``. The cost is one read of one row (``trace_version``, raised by triggers)
per ``manage.trace_poll_interval``; the rules themselves are read only when it moved.

``TraceSync`` runs where the gate runs (the master, or the single process). Each tick it
works out which rules are in force now (a rule lapses at its ``until`` without a change
in SQLite) and calls ``on_rules(pairs)`` whenever that set changed: the master puts them
in force on every worker (``mqttd.manage.trace_tree``). One poll at a time; a failed one
is logged once (then counted in ``trace_poll_failures``) and tried again next tick.
"""
from twisted.logger import Logger

from mqttd.store import trace_rules
from mqttd.store.gate_store import connect_gate
from mqttd.store.poller import GuardedPoll
from mqttd.store.pool import OnOwnConnection

__all__ = ["TraceStore", "TraceSync"]

log = Logger()


class TraceStore(OnOwnConnection):
    """``trace_rules`` of mqttd.db (prepared already), each call a Deferred on the
    store's own one-thread pool."""

    def __init__(self, reactor, path, threadpool=None):
        super().__init__(reactor, path, threadpool, "mqttd-trace", connect_gate)

    def version(self):
        return self._on_conn(trace_rules.trace_version)

    def rules(self):
        """Every rule, lapsed ones too (the poller decides what is in force)."""
        return self._on_conn(trace_rules.list_rules)

    def add(self, rule):
        return self._on_conn(trace_rules.add_rule, rule)

    def remove(self, kind, value):
        return self._on_conn(trace_rules.remove_rule, kind, value)


class TraceSync:
    """Polls ``store`` every ``interval`` seconds of ``clock``; ``on_rules(pairs)`` with
    the (kind, value) pairs in force whenever they change (once at the first poll)."""

    def __init__(self, clock, store, on_rules, metrics, interval):
        self._clock = clock
        self._store = store
        self._on_rules = on_rules
        self._metrics = metrics
        self._interval = interval
        self._version = None
        self._rules = []  # every TraceRule read at the last change
        self._in_force = None  # the set last handed to on_rules
        self._poller = GuardedPoll(clock, interval, self._poll, self._failed,
                                   self._recovered)

    @property
    def rules(self):
        """The rules in force now (TraceRule), as last read."""
        now = self._clock.seconds()
        return [rule for rule in self._rules if rule.active(now)]

    def start(self):
        self._poller.start()

    def stop(self):
        return self._poller.stop()

    def poll_now(self):
        """A change was just made here (the manhole): look at once, not at the next tick."""
        self._poller.poll_now()

    async def _poll(self):
        version = await self._store.version()
        if version != self._version:
            self._rules = await self._store.rules()
            self._version = version
        in_force = frozenset((rule.kind, rule.value) for rule in self.rules)
        if in_force != self._in_force:
            self._in_force = in_force
            self._metrics.trace_rules = len(in_force)
            self._on_rules(sorted(in_force))

    def _recovered(self, run):
        log.info("trace: the rules are read again, after {count} failed polls", count=run)

    def _failed(self, failure, run):
        self._metrics.trace_poll_failures += 1
        if run == 1:
            log.failure("trace: could not read the trace rules (retried every {interval} s)",
                        failure, interval=self._interval)
