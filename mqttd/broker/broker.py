"""The broker core of one worker: sessions, subscriptions, retained messages, routing.

It knows nothing about sockets or processes: connections (``MQTTServerProtocol``) call
into it, and it writes to them only through ``session.protocol.transport``. That keeps
it usable unchanged when a master process hands sockets to workers.

Counters are plain ints (read by metrics), bumped on paths that already do work; the
ingestion path with no subscribers costs one trie test here.
"""
import os
from itertools import count
from operator import add

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mqttd.broker.admission import Admission, AfterLoad
from mqttd.broker.budget import PartialInput
from mqttd.broker.expiry import StoredSessions
from mqttd.broker.inbound_chain import InboundQueues
from mqttd.broker.lograte import LogRateLimit
from mqttd.broker.pressure import PublisherThrottle
from mqttd.broker.retained import RetainedStore
from mqttd.broker.persistence import MemoryPersistence
from mqttd.broker.session import PUBREL_PENDING, Session
from mqttd.broker.tenancy import Tenancy
from mqttd.broker.topics import SubscriptionTrie
from mqttd.metrics import Metrics
from mqttd.namespace import session_key
from mqttd.store.sink import Message, submitter

__all__ = ["Broker"]

log = Logger()

_new_tuple = tuple.__new__

_KEYS_PER_BLOCK = 256
# A key's counter is 12 hex digits: 10 for its block, 2 for its place in the block.
_PLACES = [f"{i:02x}-" for i in reversed(range(_KEYS_PER_BLOCK))]  # popped from the end
_SUFFIX_BYTES = 8  # 64 random bits per key


class Broker:
    """Owns every session of this worker and moves messages between them.

    ``clock`` is an IReactorTime, ``config`` a BrokerConfig, ``sink`` an IMessageSink
    and ``authenticator`` anything with ``authenticate(client_id, username, password, peer)``
    returning a Deferred CONNACK code. ``submit`` is the sink's Deferred-free
    ``submit(message, notify, token)`` (adapted from ``store()`` if it has none; see
    ``mqttd.store.sink``): connections hand their publishes over through it.
    ``persistence`` keeps retained messages and persistent sessions across restarts
    (``mqttd.broker.persistence``; default: nothing is kept); ``start()`` loads them,
    and a CONNECT waits for that load. ``acl`` is the static ACL (``mqttd.broker.acl``
    AclRules) or None; with the accounts' namespaces it is ``tenancy``
    (``mqttd.broker.tenancy``). ``static_users``: the ``auth.users`` names, which the
    log lines show whole (any other username is a device's token, shown by its prefix).
    They are the names at start: after a SIGHUP that adds a user, its name shows as a
    token's prefix until a restart, and a removed one's name in full, which is not a
    secret (the gate, which decides, always has the current ones).
    """

    def __init__(self, clock, config, sink, authenticator, metrics=None, persistence=None,
                 acl=None, static_users=frozenset()):
        self.clock = clock
        # The process's one counter registry (mqttd.metrics): every count lives there.
        self.metrics = metrics = Metrics() if metrics is None else metrics
        self.config = config
        self.sink = sink
        self.submit = submitter(sink)
        # Optional: a sink that batches may want to know a submitter is gone.
        self.forget = getattr(sink, "forget", None)
        # Optional: a sink that can fill up says so (Pressure); publishers then pause.
        self.throttle = PublisherThrottle(getattr(sink, "pressure", None))
        self.authenticator = authenticator
        # What a CONNECT waits for: client id rules and authentication, in one call.
        self.admission = Admission(config.max_clientid_len, config.allow_zero_length_clientid,
                                   authenticator, self.generate_client_id)
        # Hot-path copies of limits read per message.
        self.max_inflight = config.max_inflight
        self.max_queued_messages = config.max_queued_messages
        self.max_queued_bytes = config.max_queued_bytes
        self.sessions = {}  # client id -> Session
        # Persistent sessions: session_expiry and max_sessions (mqttd.broker.expiry).
        self.stored_sessions = StoredSessions(clock, config.session_expiry,
                                              config.max_sessions, self.discard, metrics)
        # Packets being read, all connections together (mqttd.broker.budget).
        self.partial_input = PartialInput(clock, config.max_partial_bytes,
                                          config.packet_timeout, metrics)
        # The connections' inbound FIFOs, by client id: routing order across reconnects.
        self.inbound = InboundQueues(self)
        # Per-connection log lines, per client address (connect, refused, disconnect).
        self.connection_log = LogRateLimit(clock, config.log_lines_per_ip,
                                           config.log_lines_window, metrics=metrics)
        # What each connection may name, mounted into its account's namespace.
        self.static_users = frozenset(static_users)
        self.tenancy = Tenancy(acl, metrics, self.connection_log, self.static_users)
        self.trie = SubscriptionTrie()
        self.retained = RetainedStore()
        # What survives a restart (mqttd.broker.persistence): nothing by default.
        self.persistence = MemoryPersistence() if persistence is None else persistence
        # The tree's other workers (mqttd.tree.crossing), if any: ``route`` hands them
        # what it routes while ``wanted`` (someone there has a filter) or retained.
        self.elsewhere = None
        # The per-client trace (mqttd.manage.tracer.Tracer), set by the role when
        # manage.trace_file is set; None: no connection builds a trace.
        self.tracer = None
        # Message keys (make_message): made in blocks, popped from the end.
        self.boot_id = os.urandom(8).hex()
        self._key_prefix = self.boot_id + "-"
        self._key_blocks = count(0)
        self._keys = []
        self._client_ids = count(1)
        self._closed_waiters = []  # disconnect_all()'s Deferreds

    # -- what survives a restart ------------------------------------------------------

    def start(self):
        """Load what ``persistence`` kept (retained messages, persistent sessions);
        Deferred fired once done. CONNECTs wait for it (``AfterLoad``), so no client
        sees a broker that has not remembered yet."""
        loading = self.persistence.load(self)
        self.admission = AfterLoad(self.admission, loading)
        return loading

    def restore(self, loaded):
        """Put a ``mqttd.store.sessions.Loaded`` back: the retained set, and each
        session, offline since it was saved; returns [(session, {packet id: key} of its
        PUBREC'd QoS 2 deliveries)] for the persistence."""
        restored = []
        retained = self.retained
        for message in loaded.retained:
            retained.set(message.topic, message)
        for stored in loaded.sessions:
            if stored.client_id in self.sessions:
                continue
            session = Session(self, stored.client_id, False)
            session.subscriptions = dict(stored.subscriptions) or None
            for topic_filter, qos in stored.subscriptions:
                self.trie.subscribe(topic_filter, session, qos)
            inflight = {}
            released = {}
            for row, message in stored.inflight:
                if row.pubrel:
                    inflight[row.packet_id] = PUBREL_PENDING
                    if row.key is not None:
                        released[row.packet_id] = row.key
                elif message is not None:  # None: its row is gone from messages
                    inflight[row.packet_id] = (message, row.qos, row.retain)
            session.restore(inflight, [(m, qos, False) for m, qos in stored.queue],
                            stored.queued_bytes)
            if stored.dropped:
                self.metrics.mqtt_dropped["queue_full"] += stored.dropped
            self.sessions[stored.client_id] = session
            self.stored_sessions.added(session)
            self.stored_sessions.went_offline(session, stored.offline_since)
            restored.append((session, released))
        return restored

    # -- connections -------------------------------------------------------------------

    def connection_opened(self):
        """Count a new socket; False if it is over max_connections and must be closed."""
        metrics = self.metrics
        if metrics.mqtt_connections_open >= self.config.max_connections:
            metrics.mqtt_connections_refused += 1
            return False
        metrics.mqtt_connections_open += 1
        metrics.mqtt_connections_accepted += 1
        return True

    def reload_max_connections(self, max_connections):
        """SIGHUP (``mqttd.reload``): ``broker.max_connections`` from the next socket on.
        The connections open stay, also past a lowered cap (a reload drops no one): new
        ones are refused until fewer are open."""
        self.config = attrs.evolve(self.config, max_connections=max_connections)
        log.info("broker.max_connections is now {max_connections} ({open} open)",
                 max_connections=max_connections, open=self.metrics.mqtt_connections_open)

    def connection_closed(self):
        self.metrics.mqtt_connections_open -= 1
        if self._closed_waiters and not self.metrics.mqtt_connections_open:
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)

    # -- stopping ----------------------------------------------------------------------

    def stop_reading(self):
        """First step of a clean stop: no connection reads any more, so the messages
        already read are the last ones; the sink then commits them (``drain``)."""
        for session in list(self.sessions.values()):
            if session.protocol is not None:
                session.protocol.stop_reading()

    def disconnect_all(self):
        """Last step: close every connection (its acknowledgements written first); the
        Deferred fires once every one is closed."""
        d = Deferred()
        if not self.metrics.mqtt_connections_open:
            d.callback(None)
            return d
        self._closed_waiters.append(d)
        for session in list(self.sessions.values()):
            if session.protocol is not None:
                session.protocol.server_stopping()
        return d

    def generate_client_id(self):
        """An id for a zero-length client id with clean session [MQTT-3.1.3-6]."""
        return f"mqttd-{self.boot_id}-{next(self._client_ids)}"

    # -- sessions ----------------------------------------------------------------------

    def attach(self, protocol, client_id, clean):
        """Bind ``protocol`` to the session of ``client_id``; return (session, present).

        An existing connection with the same client id is closed first [MQTT-3.1.4-2]
        (abnormally: its will is published). clean=True discards any stored session.
        A new persistent session past ``max_sessions`` that finds no offline session
        to evict returns (None, False), before anything else changed: the caller
        refuses the client (CONNACK 0x03).
        """
        old = self.sessions.get(client_id)
        if not clean and (old is None or old.clean) and not self.stored_sessions.make_room():
            return None, False
        if old is not None and old.protocol is not None:
            old.protocol.take_over()  # detaches (and, if clean, discards) the old session
            old = self.sessions.get(client_id)
        if old is not None:
            if not clean and not old.clean:
                old.protocol = protocol
                self.stored_sessions.came_online(old)
                self.persistence.changed(old)
                return old, True
            self.discard(old)
        session = Session(self, client_id, clean)
        session.protocol = protocol
        self.sessions[client_id] = session
        if not clean:
            self.stored_sessions.added(session)
            self.persistence.changed(session)
        return session, False

    def taken_elsewhere(self, client_id, account=None):
        """Another broker process now holds a connection of ``client_id`` in
        ``account`` (the master says so): close ours as a takeover would
        [MQTT-3.1.4-2], will published. Sessions are per account (``session_key``)."""
        session = self.sessions.get(session_key(account, client_id))
        if session is not None and session.protocol is not None:
            session.protocol.take_over()
            return True
        return False

    def kick(self, client_id, reason, account=None):
        """The gate refuses ``client_id`` of ``account`` now (banned, its token
        revoked, its account disabled): close its live connection, as the server closing
        it [MQTT-3.1.2-8] (its will goes out, inside its own namespace). True if there
        was one."""
        session = self.sessions.get(session_key(account, client_id))
        if session is not None and session.protocol is not None:
            session.protocol.kicked(reason)
            return True
        return False

    def detach(self, session, protocol):
        """The connection of ``session`` ended; a clean session ends with it, a
        persistent one starts its ``session_expiry``."""
        if session.protocol is protocol:
            session.protocol = None
            session.detached()
            if session.clean:
                self.discard(session)
            elif self.sessions.get(session.client_id) is session:
                self.stored_sessions.went_offline(session)
                self.persistence.went_offline(session)
                self.persistence.changed(session)

    def discard(self, session):
        """Forget ``session``, all its subscriptions and the messages it holds."""
        if session.subscriptions:
            self.trie.remove_subscriber(session, session.subscriptions)
            session.subscriptions = None
        session.release()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            if not session.clean:
                self.stored_sessions.removed(session)
                self.persistence.removed(session)

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(self, session, topics):
        """Subscribe ``session`` to ((filter, qos), ...); return the SUBACK codes.

        Filters were validated by the codec. A repeated filter replaces the old
        subscription [MQTT-3.8.4-3]. Granted QoS is the requested QoS.
        """
        subs = session.subscriptions
        if subs is None:
            subs = session.subscriptions = {}
        codes = []
        for topic_filter, qos in topics:
            subs[topic_filter] = qos
            self.trie.subscribe(topic_filter, session, qos)
            codes.append(qos)
        return codes

    def subscription_saved(self, session):
        """After ``subscribe``: a Deferred fired once a persistent session's new
        subscriptions are committed (its SUBACK waits for it), or None: nothing to
        wait for (a clean session, or nothing is persisted)."""
        if session.clean:
            return None
        return self.persistence.subscribed(session)

    def send_retained(self, session, topics):
        """After SUBACK: retained messages matching each filter, retain=1 [MQTT-3.3.1-6]."""
        if not len(self.retained):
            return
        for topic_filter, granted in topics:
            for message in self.retained.match(topic_filter):
                qos = message.qos
                session.deliver(message, qos if qos < granted else granted, True, hold=True)

    def unsubscribe(self, session, topics):
        subs = session.subscriptions
        if not subs:
            return
        for topic_filter in topics:
            if subs.pop(topic_filter, None) is not None:
                self.trie.unsubscribe(topic_filter, session)
        if not session.clean:
            self.persistence.changed(session)

    # -- messages ----------------------------------------------------------------------

    def make_message(self, client_id, username, topic, payload, qos, retain, received_at):
        """A Message with a fresh key, assigned once per PUBLISH.

        ``received_at`` comes from the caller: a connection passes the time of the read
        that carried the PUBLISH (one clock call per read, not per message). Built with
        ``tuple.__new__`` directly: Message is a NamedTuple, and this skips its Python
        ``__new__`` (once per PUBLISH).
        """
        try:
            key = self._keys.pop()
        except IndexError:
            self._make_keys()
            key = self._keys.pop()
        return _new_tuple(Message, (key, client_id, username, topic, payload, qos, retain,
                                    received_at))

    def _make_keys(self):
        """The next block of message keys: ``BOOTID-COUNTER-RANDOM``.

        The random boot id makes keys unique across restarts and the counter within this
        run; it is fixed-width hex, so keys of one run sort in arrival order and the
        store's primary-key index grows at its end (scattered inserts over its pages cost
        insert speed). The 64 random bits make a key unguessable: the boot id is in every
        row and the log, and with a counter alone, rows forged under the next keys were
        taken for messages already stored (acknowledged, never stored). A block of 256
        keys costs one ``os.urandom`` and a few C-level maps; per message, that is less
        than formatting the counter alone cost (timeit: make_message 0.39 us, 0.42 before).
        """
        suffixes = os.urandom(_SUFFIX_BYTES * _KEYS_PER_BLOCK).hex()
        width = 2 * _SUFFIX_BYTES
        base = f"{self._key_prefix}{next(self._key_blocks):010x}"
        self._keys = list(map(add, map(base.__add__, _PLACES),
                              [suffixes[i:i + width] for i in range(0, len(suffixes), width)]))

    def route(self, message, forward=True):
        """Apply retain and deliver a STORED message to every matching subscriber.

        Each subscriber gets it once at min(message QoS, granted QoS) with retain=0
        [MQTT-3.3.1-9]; nothing subscribed costs one integer test in the trie. In the
        tree it goes to the other workers too (``elsewhere``), unless ``forward`` is
        False: it came from one of them.
        """
        retain = message.retain
        if retain:
            self.retained.set(message.topic, message)  # empty payload clears [MQTT-3.3.1-10]
        matches = self.trie.match(message.topic)
        if matches:
            qos = message.qos
            for session, granted in matches.items():
                session.deliver(message, qos if qos < granted else granted, False)
        elsewhere = self.elsewhere
        if elsewhere is not None and (elsewhere.wanted or retain) and forward:
            elsewhere.forward(message)
