"""The trace across the process tree: the master's events and the workers' answers.

The master writes what happens before a worker holds a client: each socket accepted or
refused at the door (``at_accept``, called by the accept loop), the gate's auth result
(``judged``), the sockets closed before a CONNECT was read (``not_connected``) and those
it refused itself after the gate let them in (``refused``: CONNACK 3 when no worker
took it in time, the gate failed or the master stops; no CONNACK when the hand-off
failed). The
worker that adopts the client writes the rest (connect, subscribe, publish, ack,
disconnect: ``mqttd.manage.tracer`` through the broker). Each process appends to the
same file itself (``mqttd.manage.trace_file`` says why).

The rules the master's poller reads go to every worker as one ``trace_rules`` message,
and again to a worker that (re)starts (``worker_ready``). ``recent_events(client_id)``
asks every live worker the ``trace`` question (``mqttd.manage.questions``, the channel
the manhole's ``clients()`` uses too) and merges their answers with the master's own
events, by time: every worker, not only the one a client is on now, since
a client that left (or moved while its worker restarted) has its last events where it
was.
"""
from collections import OrderedDict

from twisted.logger import Logger

from mqttd.manage.trace_match import from_payload, to_payload
from mqttd.manage.trace_service import NoTrace, TraceService, make_tracer
from mqttd.manage.tracer import Anonymous, limit_of, peer_text

__all__ = ["MasterTrace", "WorkerTrace", "master_trace", "worker_trace"]

log = Logger()

MAX_WAITING_ACCEPTS = 16384
"""Accept lines kept until their CONNECT names the client (then in its window), the
oldest forgotten first: a socket closed before its CONNECT leaves its line here until
pushed out (its closed socket no longer names its peer). Under a storm some accepts
miss the window; the file has every one."""


class _Peer:
    """What the master's accept loop knows of a peer, as ``peer_text`` reads it."""

    __slots__ = ("host", "port")

    def __init__(self, address):
        self.host, self.port = (address[0], address[1]) if isinstance(address, tuple) \
            else (None, None)


class _Who:
    __slots__ = ("client_id", "peer", "username", "account", "token")

    def __init__(self, client_id, peer, username, account, token):
        self.client_id, self.peer, self.username = client_id, peer, username
        self.account, self.token = account, token


def _pending_peer(pending):
    """``host:port`` of a socket the master is reading a CONNECT from, or None."""
    if pending.peer is not None:  # TLS: the client's, kept by its reader
        return peer_text(_Peer(pending.peer))
    try:
        return peer_text(_Peer(pending.sock.getpeername()))
    except (OSError, AttributeError):
        return None


class MasterTrace(TraceService):
    """The master's trace. ``channels()`` gives {slot: MasterChannel} of the live workers;
    ``questions`` is the master's ``Questions`` (``ask_all``)."""

    accepts_here = False

    def __init__(self, reactor, config, metrics, process, channels, questions,
                 threadpool=None):
        super().__init__(reactor, config, metrics, process, threadpool)
        self._channels = channels
        self._questions = questions
        self._accepts = OrderedDict()  # peer text -> its accept line, until its CONNECT

    # -- the master's hooks ------------------------------------------------------------

    def at_accept(self, address, refusal):
        """The accept loop took a socket from ``address`` (host, port); ``refusal`` is
        the door's Refusal, or None: let in."""
        who = Anonymous(peer_text(_Peer(address)))
        if refusal is not None:
            self.tracer.emit("refused", who, stage="accept", limit=refusal.limit,
                             reason=refusal.reason)
            return
        line = self.tracer.emit("accept", who)
        if who.peer is not None:
            accepts = self._accepts
            accepts[who.peer] = line
            if len(accepts) > MAX_WAITING_ACCEPTS:
                accepts.popitem(last=False)

    def _who(self, pending, connect, client_id, account):
        """(who ``pending`` is, as its CONNECT says, its auth method); its peer is its
        host alone once its socket is closed here (a hand-off that failed)."""
        username, token, method = self.tracer.name_of(connect.username)
        peer = _pending_peer(pending) or pending.host
        return _Who(client_id, peer, username, account, token), method

    def judged(self, pending, connect, client_id, result):
        """The gate answered ``connect`` (as ``client_id``) with ``result``."""
        tracer = self.tracer
        accepted = result.code == 0
        who, method = self._who(pending, connect, client_id,
                                result.account if accepted else None)
        early = self._accepts.pop(who.peer, None)
        if early is not None and tracer.window is not None:
            tracer.window.add(client_id, early)
        if accepted:
            tracer.emit("auth", who, result="accepted", method=method, code=0)
        else:
            tracer.emit("auth", who, result="refused", method=method, code=result.code,
                        reason=result.reason, limit=result.limit)

    def refused(self, pending, connect, client_id, account, reason, code=None,
                stage="connect", **fields):
        """The master closed ``pending`` itself after reading ``connect`` (as
        ``client_id`` of ``account``), for ``reason``: CONNACK ``code``, or none."""
        who, _ = self._who(pending, connect, client_id, account)
        self._accepts.pop(who.peer, None)
        self.tracer.emit("refused", who, stage=stage, code=code, reason=reason,
                         limit=limit_of(reason), **fields)

    def not_connected(self, pending, reason):
        """``pending`` closed here before its CONNECT was read, for ``reason``."""
        peer = _pending_peer(pending)
        if peer is not None:
            self._accepts.pop(peer, None)
        self.tracer.emit("disconnect", Anonymous(peer or pending.host), reason=reason,
                         stage="before connect", limit=limit_of(reason))

    # -- the workers ---------------------------------------------------------------------

    def rules_changed(self, rules):
        super().rules_changed(rules)
        payload = to_payload(rules)
        for channel in list(self._channels().values()):
            channel.send("trace_rules", payload)

    def worker_ready(self, slot):
        channel = self._channels().get(slot)
        if channel is not None:
            channel.send("trace_rules", to_payload(self.tracer.matcher.rules))

    def recent_events(self, client_id):
        """A Deferred of ``client_id``'s events, the master's and every worker's that
        answered in time (one that did not is logged and left out), oldest first."""
        own = self.tracer.recent(client_id)
        d = self._questions.ask_all("trace", {"client_id": client_id})

        def merge(answers):
            events = list(own)
            for process, answer in sorted(answers.items()):
                if not isinstance(answer, dict):  # an Unanswered: its reason
                    log.warn("trace: {process} did not answer: {why}", process=process,
                             why=getattr(answer, "reason", answer))
                    continue
                events.extend(event for event in answer.get("events", ())
                              if isinstance(event, dict))
            return sorted(events, key=lambda event: event.get("ts", 0))

        return d.addCallback(merge)


class WorkerTrace:
    """A worker's trace: its Tracer (the broker's), the rules from the master
    (``rules``, each ``trace_rules`` message) and its answer to the master's ``trace``
    question (``recent``, a handler of the worker's ``Answerer``)."""

    def __init__(self, tracer, trace_file):
        self.tracer = tracer
        self._file = trace_file

    def recent(self, args):
        client_id = args.get("client_id")
        if not isinstance(client_id, str):
            raise ValueError(f"client_id must be a string, got {client_id!r}")
        return {"events": self.tracer.recent(client_id)}

    def rules(self, payload):
        self.tracer.set_rules(from_payload(payload))

    def close(self):
        self._file.close()


def master_trace(reactor, config, metrics, process, channels, questions):
    """The master's MasterTrace, or NoTrace when ``manage.trace_file`` is empty."""
    if not config.manage.trace_file:
        return NoTrace()
    return MasterTrace(reactor, config, metrics, process, channels, questions)


def worker_trace(reactor, config, metrics, process):
    """A worker's WorkerTrace, or None when ``manage.trace_file`` is empty."""
    if not config.manage.trace_file:
        return None
    tracer, trace_file = make_tracer(reactor, config.manage, config.auth, metrics, process,
                                     accepts_here=False)
    return WorkerTrace(tracer, trace_file)
