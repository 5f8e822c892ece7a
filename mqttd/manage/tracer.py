"""The per-client trace of one process: events built, logged, kept, and who is traced.

Every event is one JSON object (``build_event``): when (``ts``, unix seconds), what
(``event``), where (``process``), and who: ``client_id``, ``peer`` (IP:port),
``username``, ``account`` and, for a token user, ``token`` (its prefix: never the token;
``username`` is then null). It goes through twisted.logger: a ``Logger`` of namespace
``mqttd.trace`` whose own ``LogPublisher`` (not the global one: the journal would
drown) feeds the observers, the JSON-lines file (``mqttd.manage.trace_file``) and the
window of recent events per client (``mqttd.manage.trace_window``). Strings are clipped
to ``MAX_FIELD`` characters and lists to ``MAX_ITEMS`` items, so a line stays a few KiB
whatever a client sends (a client id may be 64 KiB).

Connection events (accept, refusal, auth result, connect, subscribe, disconnect) are
written for every client whenever the trace is on; publish and acknowledgement events
only for the clients ``matcher`` matches (``ClientTrace.verbose``). The broker's hot
path sees only ``ClientTrace``: its counters and its ``verbose`` flag (see
``mqttd.broker.protocol`` and ``inbound``). With the trace off a connection's
``trace`` is None: the broker tests it and does nothing else.
"""
import json

from twisted.logger import Logger, LogLevel, LogPublisher

from mqttd.manage.trace_match import TraceMatcher
from mqttd.store.gate_records import token_prefix

__all__ = ["Anonymous", "ClientTrace", "CountingTransport", "MAX_FIELD", "MAX_ITEMS", "Tracer",
           "build_event", "clip", "limit_of"]

log = Logger()

MAX_FIELD = 256
"""Characters kept of any string of an event (topic, client id, reason...)."""
MAX_ITEMS = 16
"""Items kept of a list of an event (a SUBSCRIBE's filters)."""

_LIMITS = {
    # The key behind a refusal or a close whose reason names no key itself.
    "client id too long": "broker.max_clientid_len",
    "empty client id": "broker.allow_zero_length_clientid",
    "client id reserved": "namespace ($a/ is the accounts')",
    "max sessions": "broker.max_sessions",
    "max connections": "broker.max_connections",
    "partial input budget": "broker.max_partial_bytes",
    "packet timeout": "broker.packet_timeout",
    "connect timeout": "broker.idle_timeout",
    "auth timeout": "broker.idle_timeout",
    "no CONNECT in time": "broker.idle_timeout",
    "no worker in time": "broker.idle_timeout (no worker up to take it)",
    "keepalive timeout": "keepalive (1.5x, at most broker.max_keepalive)",
}


def limit_of(reason, detail=None):
    """The configuration key (or rule) a refusal or close for ``reason`` is about."""
    if reason == "store failed" and detail == "ack timeout":
        return "webhook.ack_timeout"
    return _LIMITS.get(reason)


def clip(text, limit=MAX_FIELD):
    if isinstance(text, str) and len(text) > limit:
        return text[:limit] + "..."
    return text


def build_event(ts, process, kind, who, fields):
    """The record of one event: ``who`` has ``client_id``, ``peer``, ``username``,
    ``account`` and ``token``; ``fields`` (a dict) what the event says."""
    record = {"ts": round(ts, 6), "event": kind, "process": process,
              "client_id": clip(who.client_id), "peer": who.peer,
              "username": clip(who.username), "account": who.account}
    if who.token is not None:
        record["token"] = who.token
    for name, value in fields.items():
        kind_of = type(value)
        if kind_of is str:
            if len(value) > MAX_FIELD:
                value = clip(value)
        elif kind_of is list or kind_of is tuple:
            if len(value) > MAX_ITEMS:
                record[f"{name}_count"] = len(value)
            value = [clip(item) for item in value[:MAX_ITEMS]]
        record[name] = value
    return record


_encode = json.JSONEncoder(separators=(",", ":")).encode  # made once: the C encoder


def peer_text(address):
    """``host:port`` of an IAddress (``[v6]:port``), or None."""
    host = getattr(address, "host", None)
    if host is None:
        return None
    port = getattr(address, "port", None)
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


class Anonymous:
    """Who an event is about before its CONNECT is read: a peer, nothing more."""

    __slots__ = ("peer",)
    client_id = username = account = token = None

    def __init__(self, peer):
        self.peer = peer


class Tracer:
    """One process's trace. ``process`` names it in every event; ``observers`` are
    twisted.logger observers of the events (each gets ``trace``, the record, and
    ``trace_line``, its JSON line); ``window`` a RecentEvents (or None);
    ``static_users`` the ``auth.users`` names (any other username is a token);
    ``accepts_here``: this process accepts its sockets (the single process), so a
    connection's ``accept`` event is written by the broker; in the tree the master
    writes it."""

    def __init__(self, clock, process, observers, window, static_users, metrics,
                 accepts_here=False):
        self.clock = clock
        self.process = process
        self.window = window
        self._static_users = frozenset(static_users)
        self.metrics = metrics
        self.accepts_here = accepts_here
        self.matcher = TraceMatcher()
        self._live = set()  # ClientTraces identified and not closed: rules re-matched
        self._publish = LogPublisher(*observers)
        self._log = Logger(namespace="mqttd.trace", observer=self._publish)

    # -- events ------------------------------------------------------------------------

    def emit(self, kind, who, **fields):
        """Write one event about ``who``; the JSON line written."""
        now = self.clock.seconds()
        record = build_event(now, self.process, kind, who, fields)
        line = _encode(record) + "\n"
        self.metrics.trace_events[kind] += 1
        # A twisted.logger event, as Logger.emit makes it, handed to the trace's own
        # publisher directly (Logger.emit's check of the level costs more than all else).
        self._publish({"log_logger": self._log, "log_level": LogLevel.info,
                       "log_namespace": "mqttd.trace", "log_source": None,
                       "log_format": None, "log_time": now, "trace": record,
                       "trace_line": line})
        if self.window is not None and record["client_id"] is not None:
            self.window.add(who.client_id, line)
        return line

    def recent(self, client_id):
        """This process's recent events of ``client_id`` (dicts, oldest first)."""
        return [] if self.window is None else self.window.recent(client_id)

    # -- who is who ----------------------------------------------------------------------

    def name_of(self, username):
        """(username, token prefix, method) as a trace may show them: a token user's
        username is its token, shown only by its prefix."""
        if username is None:
            return None, None, "anonymous"
        if username in self._static_users:
            return username, None, "user"
        return None, token_prefix(username), "token"

    def opened(self, transport):
        """A connection starts now on ``transport``: (its ClientTrace, the transport to
        write to, which counts what goes out)."""
        peer = transport.getPeer()
        trace = ClientTrace(self, peer_text(peer), getattr(peer, "host", None))
        if self.accepts_here:
            trace.early = self.emit("accept", trace)
        return trace, CountingTransport(transport, trace)

    def refused(self, address, limit, reason=None):
        """A socket from ``address`` (an IAddress) closed at accept by ``limit``."""
        self.emit("refused", Anonymous(peer_text(address)), stage="accept", limit=limit,
                  reason=reason)

    def identified(self, trace):
        self._live.add(trace)
        trace.verbose = self.matcher.matches(trace.client_id, trace.username or trace.token,
                                             trace.host)

    def closed(self, trace):
        self._live.discard(trace)

    def set_rules(self, rules):
        """Put ``rules`` ((kind, value) pairs) in force, for the live connections too."""
        if not self.matcher.replace(rules):
            return
        log.info("trace: {count} rule(s) in force: their clients' publishes are traced",
                 count=len(self.matcher))
        matches = self.matcher.matches
        for trace in self._live:
            trace.verbose = matches(trace.client_id, trace.username or trace.token,
                                    trace.host)


class ClientTrace:
    """The trace of one connection: who it is, what it moved, whether it is traced.

    The broker bumps the counters (``bytes_in`` per read, ``messages_in`` per PUBLISH;
    the out ones through ``CountingTransport``) and tests ``verbose`` before building
    a publish or ack event. Slotted: one per connection while the trace is on."""

    __slots__ = ("_tracer", "peer", "host", "client_id", "username", "token", "account",
                 "opened_at", "bytes_in", "bytes_out", "messages_in", "messages_out",
                 "verbose", "early")

    def __init__(self, tracer, peer, host):
        self._tracer = tracer
        self.peer = peer
        self.host = host
        self.client_id = None
        self.username = None
        self.token = None
        self.account = None
        self.opened_at = tracer.clock.seconds()
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0
        self.verbose = False
        self.early = None  # the accept line, kept for the window until the id is known

    def identify(self, client_id, username, account):
        """Who the CONNECT says (``username`` as sent: a token is shown by its prefix);
        returns how it authenticated ("anonymous", "user", "token")."""
        tracer = self._tracer
        self.client_id = client_id
        self.username, self.token, method = tracer.name_of(username)
        self.account = account
        if self.early is not None and tracer.window is not None and client_id is not None:
            tracer.window.add(client_id, self.early)
        self.early = None
        return method

    def event(self, kind, **fields):
        self._tracer.emit(kind, self, **fields)

    # -- the broker's calls ------------------------------------------------------------

    def authenticated(self, client_id, username, account, code, reason=None, limit=None):
        method = self.identify(client_id, username, account)
        if code == 0:
            self.event("auth", result="accepted", method=method, code=0)
        else:
            self.event("auth", result="refused", method=method, code=code, reason=reason,
                       limit=limit)

    def connected(self, clean, keepalive, present):
        """CONNACK 0 went out: from now on the rules may trace its publishes."""
        self._tracer.identified(self)
        self.event("connect", clean=clean, keepalive=keepalive, present=present)

    def refused(self, code, reason, limit=None):
        self.event("refused", stage="connect", code=code, reason=reason,
                   limit=limit or limit_of(reason))

    def subscribed(self, filters, codes):
        self.event("subscribe", filters=[f"{topic_filter} q{qos}"
                                         for topic_filter, qos in filters],
                   granted=list(codes))

    def published(self, packet, message):
        self.event("publish", topic=packet.topic, qos=packet.qos, retain=packet.retain,
                   packet_id=packet.packet_id, dup=packet.dup, bytes=len(packet.payload),
                   key=message.key)

    def acked(self, entries, now):
        """The head of an inbound FIFO is settled and about to be released: an ``ack``
        event for each committed QoS 1/2 message in it, with its commit latency (from
        the read that carried it to this ack)."""
        for entry in entries:
            if not entry.settled:
                return
            message, ack = entry.message, entry.ack
            if message is None or type(ack) is not bytes:
                continue
            self.event("ack", ack="puback" if message.qos == 1 else "pubrec",
                       packet_id=int.from_bytes(ack[2:4], "big"), key=message.key,
                       commit_latency_ms=round((now - message.received_at) * 1000.0, 3))

    def disconnected(self, reason, detail=None):
        tracer = self._tracer
        tracer.closed(self)
        self.event("disconnect", reason=reason, detail=detail, limit=limit_of(reason, detail),
                   duration_s=round(tracer.clock.seconds() - self.opened_at, 3),
                   bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                   messages_in=self.messages_in, messages_out=self.messages_out)


class CountingTransport:
    """A connection's transport as the broker writes to it while the trace is on: counts
    the bytes and the PUBLISH packets out (every PUBLISH is a write of its own; acks
    released together are one write, which starts with a PUBACK), passes the rest on."""

    __slots__ = ("_transport", "_trace", "_write")

    def __init__(self, transport, trace):
        self._transport = transport
        self._trace = trace
        self._write = transport.write

    def write(self, data):
        trace = self._trace
        trace.bytes_out += len(data)
        if data and data[0] >> 4 == 3:
            trace.messages_out += 1
        self._write(data)

    def writeSequence(self, data):
        for chunk in data:
            self.write(chunk)

    def __getattr__(self, name):
        return getattr(self._transport, name)
