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
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger

from mqttd.store import trace_rules
from mqttd.store.gate_store import connect_gate
from mqttd.store.pool import OnOwnPool

__all__ = ["TraceStore", "TraceSync"]

log = Logger()


class TraceStore(OnOwnPool):
    """``trace_rules`` of mqttd.db (prepared already), each call a Deferred on the
    store's own one-thread pool."""

    def __init__(self, reactor, path, threadpool=None):
        super().__init__(reactor, path, threadpool, "mqttd-trace")
        self._conn = None

    def _open(self):
        self._conn = connect_gate(self.path)

    def _close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _on_conn(self, fn, *args):
        return self._run(lambda: fn(self._conn, *args))

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
        self._call = None
        self._polling = None
        self._running = False
        self._failures = 0

    @property
    def rules(self):
        """The rules in force now (TraceRule), as last read."""
        now = self._clock.seconds()
        return [rule for rule in self._rules if rule.active(now)]

    def start(self):
        self._running = True
        if self._polling is None and self._call is None:
            self._tick()

    def stop(self):
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._polling is None:
            return succeed(None)
        d = Deferred()
        self._polling.addBoth(lambda _: d.callback(None))
        return d

    def poll_now(self):
        """A change was just made here (the manhole): look at once, not at the next tick."""
        if self._running and self._polling is None:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._tick()

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
        version = await self._store.version()
        if version != self._version:
            self._rules = await self._store.rules()
            self._version = version
        in_force = frozenset((rule.kind, rule.value) for rule in self.rules)
        if in_force != self._in_force:
            self._in_force = in_force
            self._metrics.trace_rules = len(in_force)
            self._on_rules(sorted(in_force))
        if self._failures:
            log.info("trace: the rules are read again, after {count} failed polls",
                     count=self._failures)
            self._failures = 0

    def _failed(self, failure):
        self._failures += 1
        self._metrics.trace_poll_failures += 1
        if self._failures == 1:
            log.failure("trace: could not read the trace rules (retried every {interval} s)",
                        failure, interval=self._interval)
