"""The trace of the process that owns the listeners: its file, its rules, the operator's API.

Built by the single process (``mqttd.service``) and, as ``MasterTrace``
(``mqttd.manage.trace_tree``), by the master of the tree, when ``manage.trace_file`` is
set; else ``NoTrace`` stands in, whose hooks do nothing. It owns the process's
``Tracer`` (events to the file and to the window), the rules' store and poller
(``mqttd.manage.trace_sync``), and what the manhole calls:

- ``recent_events(client_id)``: a Deferred of the client's recent events (dicts, oldest
  first), from the whole tree;
- ``trace_add(client_id=, username=, ip=, seconds=)``, ``trace_rm(...)``: a rule in
  ``trace_rules``, in force within a tick (at once here: the poller looks at once);
- ``trace_list()``: the rules in force.

Workers build only a ``Tracer`` (``worker_tracer``): the master sends them the rules.
"""
import os

from twisted.application.service import Service
from twisted.internet.defer import fail, maybeDeferred, succeed
from twisted.logger import Logger

from mqttd.manage.trace_file import TraceFile, open_trace_file
from mqttd.manage.trace_sync import TraceStore, TraceSync
from mqttd.manage.trace_window import RecentEvents
from mqttd.manage.tracer import Tracer
from mqttd.store.accounts import AccountsError
from mqttd.store.sqlite import DB_FILENAME
from mqttd.store.trace_rules import TraceRule, canonical_rule_value

__all__ = ["DEFAULT_RULE_SECONDS", "NoTrace", "TraceOff", "TraceService", "make_tracer",
           "one_rule", "single_trace"]

log = Logger()

DEFAULT_RULE_SECONDS = 3600.0
"""How long a rule made without a duration lasts: a forgotten trace of a busy client
must not fill the disk (EMQX's traces end too)."""


class TraceOff(Exception):
    """``manage.trace_file`` is empty: the trace is off in this appliance."""


def make_tracer(clock, manage, auth, metrics, process, accepts_here):
    """The Tracer of one process for ``manage`` (the ``[manage]`` section) and ``auth``
    (its static users are names; other usernames are tokens), and its TraceFile."""
    path = manage.trace_file
    trace_file = TraceFile(clock, open_trace_file(path), metrics, path)

    def window_full():
        log.info("trace: the window of recent events is full ({clients} clients or {bytes} "
                 "bytes, manage.trace_window_clients / trace_window_bytes): the least "
                 "recently seen clients are forgotten first from now on",
                 clients=manage.trace_window_clients, bytes=manage.trace_window_bytes)

    window = RecentEvents(manage.trace_window_clients, manage.trace_window_bytes,
                          manage.trace_window_client_bytes, metrics, window_full)
    tracer = Tracer(clock, process, [trace_file], window,
                    [user.username for user in auth.users], metrics, accepts_here)
    return tracer, trace_file


def one_rule(client_id=None, username=None, ip=None):
    """(kind, value) of the one rule named; AccountsError unless exactly one is."""
    named = [(kind, value) for kind, value in (("client_id", client_id),
                                               ("username", username), ("ip", ip))
             if value is not None]
    if len(named) != 1:
        raise AccountsError("name one of client_id=, username= or ip=")
    kind, value = named[0]
    return kind, canonical_rule_value(kind, value)


def _rule_dict(rule):
    return {"kind": rule.kind, "value": rule.value, "who": rule.who, "at": rule.at,
            "until": rule.until}


class TraceService(Service):
    """The trace of the single process (``accepts_here``) or, subclassed, the master."""

    accepts_here = True
    enabled = True

    def __init__(self, reactor, config, metrics, process, threadpool=None):
        self._reactor = reactor
        self.tracer, self._file = make_tracer(reactor, config.manage, config.auth, metrics,
                                              process, self.accepts_here)
        self._store = TraceStore(reactor, os.path.join(config.server.data_dir, DB_FILENAME),
                                 threadpool)
        self._sync = TraceSync(reactor, self._store, self.rules_changed, metrics,
                               config.manage.trace_poll_interval)
        log.info("trace: writing client events to {path}", path=config.manage.trace_file)

    def startService(self):
        super().startService()
        d = self._store.start()
        d.addCallbacks(lambda _: self._sync.start(),
                       lambda f: log.failure("trace: the rules' store did not open", f))

    def stopService(self):
        super().stopService()
        d = self._sync.stop()
        d.addBoth(lambda _: self._store.close())
        d.addBoth(lambda _: self._file.close())
        return d

    def rules_changed(self, rules):
        """The rules in force changed (the poller): in force here."""
        self.tracer.set_rules(rules)

    # -- the operator's API (the manhole) ----------------------------------------------

    def recent_events(self, client_id):
        """A Deferred of ``client_id``'s recent events, oldest first."""
        return succeed(self.tracer.recent(client_id))

    def trace_add(self, client_id=None, username=None, ip=None,
                  seconds=DEFAULT_RULE_SECONDS, who="manhole"):
        """Trace every publish of the client(s) named, for ``seconds`` (None: until
        removed): a Deferred of the rule as stored (a dict)."""
        try:
            kind, value = one_rule(client_id, username, ip)
        except AccountsError as e:
            return fail(e)
        at = self._reactor.seconds()
        rule = TraceRule(kind, value, who, at, None if seconds is None else at + seconds)
        d = maybeDeferred(self._store.add, rule)
        d.addCallback(self._changed, _rule_dict)
        return d

    def trace_rm(self, client_id=None, username=None, ip=None):
        """Stop tracing what ``trace_add`` named: a Deferred of True (False: no rule)."""
        try:
            kind, value = one_rule(client_id, username, ip)
        except AccountsError as e:
            return fail(e)
        d = maybeDeferred(self._store.remove, kind, value)
        d.addCallback(self._changed, bool)
        return d

    def trace_list(self):
        """The rules in force (dicts), as last read."""
        return [_rule_dict(rule) for rule in self._sync.rules]

    def _changed(self, result, shape):
        self._sync.poll_now()
        return shape(result)


class NoTrace:
    """The trace off (``manage.trace_file`` empty): the hooks do nothing, the API says so."""

    enabled = False
    tracer = None
    at_accept = None  # no hook in the accept loop

    def judged(self, pending, connect, client_id, result):
        pass

    def not_connected(self, pending, reason):
        pass

    def refused(self, pending, connect, client_id, account, reason, code=None,
                stage="connect", **fields):
        pass

    def worker_ready(self, slot):
        pass

    def setServiceParent(self, parent):
        pass

    def _off(self, *args, **kwargs):
        return fail(TraceOff("the trace is off: set manage.trace_file"))

    recent_events = trace_add = trace_rm = _off

    def trace_list(self):
        return []


def single_trace(reactor, config, metrics, process="mqttd"):
    """The single process's TraceService, or NoTrace when ``manage.trace_file`` is empty."""
    if not config.manage.trace_file:
        return NoTrace()
    return TraceService(reactor, config, metrics, process)
