"""The adapter between one client socket and the broker: MQTTServerProtocol.

It owns what is per connection and nothing more: the stream parser, the CONNECT
handshake (limits, client id rules, asynchronous authentication), keepalive, and the
inbound ingestion path. Sessions, routing and retained messages live in ``Broker``.

The ingestion promise is kept here: every inbound PUBLISH is handed to the message
store (``broker.submit``, see ``mqttd.store.interface``), and its PUBACK / PUBREC is
written only after the store settled it as committed. Acks leave in receive order
[MQTT-4.6.0-2] even when the store settles messages out of order: a FIFO of pending
entries is released from its head, and the acks released together share one write. A connection with ``max_inflight``
entries waiting stops reading from its socket (backpressure, not drops), and so does one
that publishes while the store is full, until it drains (``mqttd.broker.pressure``);
keepalive does not count that silence against the client. A store failure sends no ack and closes
the connection, so the device retransmits. What the store commits after the connection
closed is not acknowledged but is routed (``_release_closed``): it is in the database.

Timers are lazy: one DelayedCall per connection, and keepalive only stores a timestamp
per read; the timer checks it when it fires and re-arms for the remaining time.
"""
from collections import deque

from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger

from mqttd.codec import (
    PINGRESP_BYTES,
    Parser,
    ProtocolError,
    encode,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
)
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Publish,
    Pubcomp,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

from mqttd.store.interface import StoreRejected, one_off

__all__ = ["MQTTServerProtocol", "MQTTServerFactory"]

log = Logger()

# Connection states, in the order a connection goes through them.
_AWAIT_CONNECT = 0
_AUTHENTICATING = 1
_CONNECTED = 2
_CLOSED = 3
_REFUSED = 4  # over max_connections: never counted, nothing to clean up

# Reasons to have the transport paused (a bit set: resume only when all are gone).
_PAUSE_AUTH = 1
_PAUSE_INFLIGHT = 2
_PAUSE_WRITES = 4  # the client reads slower than we write to it
_PAUSE_PRESSURE = 8  # the message sink is full (mqttd.broker.pressure)
_OUR_SILENCE = _PAUSE_INFLIGHT | _PAUSE_PRESSURE  # keepalive does not count it

_CLOSE_GRACE = 10.0
"""Seconds a connection mqttd closes may take to finish closing before it is aborted: a
client that never reads its last bytes, or never answers TLS's close_notify, would
otherwise keep its socket and its max_connections slot."""

# Short, stable reasons for CONNACK refusals (the log and the per-client trace key on them).
_REFUSAL_REASONS = {
    CONNACK_BAD_CREDENTIALS: "bad credentials",
    CONNACK_NOT_AUTHORIZED: "not authorized",
    CONNACK_SERVER_UNAVAILABLE: "auth unavailable",
}


def _peer(transport):
    addr = transport.getPeer()
    host = getattr(addr, "host", None)
    if host is None:
        return str(addr)
    return f"{host}:{addr.port}"


class MQTTServerProtocol(Protocol):
    """One MQTT 3.1.1 client connection.

    Slotted (the Twisted base classes still allow a ``__dict__``, which stays unused) so
    that 10,000 idle connections stay small. Entries of the inbound FIFO ``_pending``
    are lists ``[ack bytes | None, message | None, stored?, qos2 packet id | 0]``.
    """

    __slots__ = (
        "transport",
        "connected",
        "factory",
        "_broker",
        "_clock",
        "_parser",
        "_held",
        "_state",
        "_session",
        "_client_id",
        "_username",
        "_will",
        "_connect",
        "_keepalive",
        "_last_seen",
        "_timer",
        "_pending",
        "_after_close",
        "_route_after",
        "_notify",
        "_paused",
        "_backlog",
        "writes_blocked",
        "_producer_registered",
    )

    def __init__(self, broker, clock):
        self.transport = None
        self.connected = 0
        self.factory = None
        self._broker = broker
        self._clock = clock
        self._parser = None
        self._held = 0  # bytes of our unfinished packet in broker.partial_input
        self._state = _AWAIT_CONNECT
        self._session = None
        self._client_id = None
        self._username = None
        self._will = None
        self._connect = None
        self._keepalive = 0
        self._last_seen = 0.0
        self._timer = None
        self._pending = None
        self._after_close = None
        self._route_after = None
        self._notify = None
        self._paused = 0
        self._backlog = None
        self.writes_blocked = False
        self._producer_registered = False

    # -- Twisted protocol interface ----------------------------------------------------

    def connectionMade(self):
        broker = self._broker
        if not broker.connection_opened():
            self._state = _REFUSED
            log.info("refused {peer}: {reason}", peer=_peer(self.transport),
                     reason="max connections")
            self.transport.abortConnection()
            return
        config = broker.config
        # Until its CONNECT is read, a client may make us hold max_connect_size at most.
        self._parser = Parser(config.max_packet_size, server=True,
                              max_connect_size=config.max_connect_size)
        self._timer = self._clock.callLater(config.idle_timeout, self._timeout)
        # Acks and deliveries are small writes: with Nagle's algorithm a PUBACK can wait
        # for the client's delayed ACK (up to 40 ms on real networks). EMQX and mosquitto
        # brokers run with TCP_NODELAY for the same reason.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)

    def dataReceived(self, data):
        state = self._state
        if state >= _CLOSED:
            return
        parser = self._parser
        try:
            packets = parser.feed(data)
        except ProtocolError as e:
            self._protocol_error(e)
            return
        held = parser.partial_size
        if held or self._held:
            # An unfinished packet began, grew or ended: the broker's budget and deadline.
            if not self._broker.partial_input.hold(self, self._held, held, bool(packets)):
                self._close("partial input budget", abort=True, detail=(
                    f"a packet of {held} bytes does not fit broker.max_partial_bytes"))
                return
            self._held = held
        if not packets:
            return
        if self._backlog is not None:  # authenticating, or paused by the sink (TLS may
            self._backlog.extend(packets)  # still hand over what one read decrypted)
            return
        self._last_seen = self._clock.seconds()
        self._process(packets)

    def connectionLost(self, reason=None):
        if self._state == _REFUSED:
            return
        if self._state != _CLOSED:
            self._shutdown("connection lost")
        elif self._timer is not None and self._timer.active():
            self._timer.cancel()  # the close grace (_close): closed in time
        self._timer = None
        broker = self._broker
        broker.connection_closed()
        if self._held:
            broker.partial_input.release(self, self._held)
            self._held = 0
        self._parser = None
        self._session = None
        self._backlog = None
        self._notify = None  # breaks the self -> bound method -> self cycle

    # -- the packet loop ---------------------------------------------------------------

    def _process(self, packets):
        """Handle ``packets`` in order; keep the rest aside if CONNECT went async."""
        handlers = _HANDLERS
        on_publish = self._on_publish
        for i, packet in enumerate(packets):
            if type(packet) is Publish:
                if on_publish(packet):  # the sink is full: the rest waits (sink_drained)
                    self._backlog = packets[i + 1:]
                    return
            else:
                handlers[type(packet)](self, packet)
            if self._state != _CONNECTED:
                if self._state == _AUTHENTICATING:
                    self._backlog = packets[i + 1:]
                return

    def _protocol_error(self, error):
        self._broker.protocol_errors += 1
        if error.connack_code is not None and self._state < _CONNECTED:
            self.transport.write(encode(Connack(False, error.connack_code)))
        self._close("protocol error", detail=error.reason)

    # -- CONNECT -----------------------------------------------------------------------

    def _on_connect(self, packet):
        config = self._broker.config
        client_id = packet.client_id
        if len(client_id) > config.max_clientid_len:
            self._refuse(CONNACK_IDENTIFIER_REJECTED, "client id too long")
            return
        if not client_id:
            if not config.allow_zero_length_clientid or not packet.clean_session:
                self._refuse(CONNACK_IDENTIFIER_REJECTED, "empty client id")
                return
            client_id = self._broker.generate_client_id()  # [MQTT-3.1.3-6]
        self._client_id = client_id
        self._username = packet.username
        self._connect = packet
        self._state = _AUTHENTICATING
        d = self._broker.authenticator.authenticate(client_id, packet.username,
                                                    packet.password)
        d.addCallbacks(self._auth_done, self._auth_error)
        if self._state == _AUTHENTICATING:
            # Pending: stop reading; packets already parsed wait in _backlog.
            self._pause(_PAUSE_AUTH)

    def _refuse(self, code, reason):
        self.transport.write(encode(Connack(False, code)))
        self._close(reason)

    def _auth_error(self, failure):
        if self._state != _AUTHENTICATING:
            return None
        log.failure("authenticator failed for {client_id}", failure,
                    client_id=self._client_id)
        self._refuse(CONNACK_SERVER_UNAVAILABLE, "auth unavailable")
        return None

    def _auth_done(self, code):
        if self._state != _AUTHENTICATING:
            return  # the socket went away while we waited
        connect = self._connect
        self._connect = None
        peer = _peer(self.transport)
        if code != CONNACK_ACCEPTED:
            reason = _REFUSAL_REASONS.get(code, "auth refused")
            log.info("auth {client_id} {peer} user={username}: refused {code}",
                     client_id=self._client_id, peer=peer, username=connect.username,
                     code=code)
            self._refuse(code, reason)
            return
        broker = self._broker
        session, present = broker.attach(self, self._client_id, connect.clean_session)
        if session is None:  # max_sessions, and none offline to evict
            self._refuse(CONNACK_SERVER_UNAVAILABLE, "max sessions")
            return
        self._session = session
        # An earlier connection of this client (dropped, or just taken over) may still
        # have messages to route: ours go after them (_route).
        self._route_after = _anchor(broker.unrouted.get(self._client_id))
        self._will = connect.will
        self._state = _CONNECTED
        # One bound method for every submit: a store settles consecutive messages with
        # the same ``notify`` object (identity) in one call.
        self._notify = self._settled
        self.transport.write(encode(Connack(present, CONNACK_ACCEPTED)))
        log.info("connect {client_id} {peer} user={username} clean={clean} "
                 "keepalive={keepalive} present={present}",
                 client_id=self._client_id, peer=peer, username=connect.username,
                 clean=connect.clean_session, keepalive=connect.keepalive, present=present)
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        # Also the received_at of the publishes that waited in the backlog.
        self._last_seen = self._clock.seconds()
        keepalive = connect.keepalive
        if not keepalive or keepalive > broker.config.max_keepalive:
            keepalive = broker.config.max_keepalive  # the server's bound on silence
        self._keepalive = keepalive * 1.5  # [MQTT-3.1.2-24]
        self._timer = self._clock.callLater(self._keepalive, self._timeout)
        self.transport.registerProducer(self, True)
        self._producer_registered = True
        session.resume()
        backlog = self._backlog
        self._backlog = None
        self._unpause(_PAUSE_AUTH)
        if backlog:
            self._process(backlog)

    def _publish_will(self):
        """Publish the will like this connection's last message: stored, then routed in
        the client's receive order.

        The platform ingests wills too (a device's "offline" notice is data), so it is
        submitted like a PUBLISH, into the FIFO where the client's routing ends: this
        connection's, or, once that is empty, the earlier connection's it routes after
        (``_anchor``). It is routed after everything received before the drop, even
        when its own commit lands first (a retained "online" still being stored must
        not overwrite the will's "offline"), and a next connection of the client routes
        after it (``Broker.unrouted``).
        """
        will, self._will = self._will, None
        broker = self._broker
        broker.wills_published += 1
        broker.received += 1
        message = broker.make_message(self._client_id, self._username, will.topic,
                                      will.payload, will.qos, will.retain,
                                      self._clock.seconds())
        target = _anchor(self) or self
        if target._pending is None:
            target._pending = deque()
        entry = [None, message, False, 0]
        target._pending.append(entry)
        broker.unrouted[self._client_id] = target
        broker.submit(message, _settle_wills, (target, entry))

    def take_over(self):
        """Another connection claimed this client id [MQTT-3.1.4-2]; close abnormally."""
        self._close("takeover")

    # -- keepalive and idle timeout ----------------------------------------------------

    def _timeout(self):
        self._timer = None
        state = self._state
        if state == _CONNECTED:
            if self._paused & _OUR_SILENCE:
                # We stopped reading (the store is behind): the client's packets, its
                # PINGREQs too, wait unread in the socket. The silence is ours; closing
                # would also publish a false will. (While its socket is full the silence
                # is the client's: it counts from the last time it drained, see
                # resumeProducing, so a client that stopped reading is still closed.)
                self._timer = self._clock.callLater(self._keepalive, self._timeout)
                return
            idle = self._clock.seconds() - self._last_seen
            if idle >= self._keepalive:
                self._close("keepalive timeout", abort=True)
            else:
                self._timer = self._clock.callLater(self._keepalive - idle, self._timeout)
        elif state == _AWAIT_CONNECT:
            self._close("connect timeout", abort=True)
        elif state == _AUTHENTICATING:
            # Not in the spec: an authenticator that never answers must not pin the socket.
            self._close("auth timeout", abort=True)

    def packet_overdue(self):
        """Our unfinished packet began ``packet_timeout`` ago (``broker.partial_input``):
        close, unless we are the ones not reading it. True if it closed the connection."""
        if self._state >= _CLOSED:
            return False
        if self._paused & ~_PAUSE_WRITES:
            # We stopped reading (authentication, a full window): the client cannot
            # finish it, so its deadline starts again. A socket it does not drain
            # (_PAUSE_WRITES alone) is its own silence, as for keepalive.
            self._broker.partial_input.renew(self)
            return False
        self._close("packet timeout", abort=True)
        return True

    # -- inbound PUBLISH: store, then ack in order, then route -------------------------

    def _on_publish(self, packet):
        broker = self._broker
        broker.received += 1
        qos = packet.qos
        pending = self._pending
        qos2_id = 0
        if qos == 1:
            ack = encode_puback(packet.packet_id)
        elif qos == 2:
            qos2_id = packet.packet_id
            ack = encode_pubrec(qos2_id)
            session = self._session
            ids = session.inbound_qos2
            if ids is None:
                ids = session.inbound_qos2 = set()
            if qos2_id in ids:
                # Retransmit of a message already stored (or being stored): PUBREC
                # again, after the original's, without storing or routing it twice.
                broker.duplicates += 1
                waiting = session.qos2_pending
                original = waiting.get(qos2_id) if waiting else None
                if original is not None:
                    # The original is still being stored by a dropped connection: this
                    # PUBREC waits for that commit, and fails with it (_original_settled).
                    self._queue_ack([ack, None, False, 0], original)
                elif pending:
                    pending.append([ack, None, True, 0])
                else:
                    self.transport.write(ack)
                return
            ids.add(qos2_id)
        else:
            ack = None
        # received_at: the time of the read that carried it (set by dataReceived, and
        # by _auth_done for packets that waited for authentication).
        message = broker.make_message(self._client_id, self._username, packet.topic,
                                      packet.payload, qos, packet.retain, self._last_seen)
        if pending is None:
            pending = self._pending = deque()
        # Queued BEFORE submitting: the store may settle it at once (the in-memory store
        # always does; a refusal may), and _shutdown must see it to release a QoS 2 id.
        entry = [ack, message, False, qos2_id]
        pending.append(entry)
        broker.submit(message, self._notify, entry)
        if len(pending) >= broker.max_inflight and self._state == _CONNECTED:
            self._pause(_PAUSE_INFLIGHT)
        if broker.throttle.full and self._state == _CONNECTED:
            self._pause(_PAUSE_PRESSURE)
            broker.throttle.hold(self)
            return True  # stop reading: _process keeps the rest of this read
        return None

    def sink_drained(self):
        """The sink that paused us has drained (``mqttd.broker.pressure``): read again,
        starting with what the read that paused us still held."""
        if not self._paused & _PAUSE_PRESSURE or self._state != _CONNECTED:
            return
        self._last_seen = self._clock.seconds()  # keepalive counts from when we read again
        backlog, self._backlog = self._backlog, None
        self._unpause(_PAUSE_PRESSURE)
        if backlog:
            self._process(backlog)

    def _queue_ack(self, entry, original):
        """Queue ``entry`` (an ack with nothing to store) until ``original`` settles."""
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        pending.append(entry)
        original[1].append((self, entry))
        if len(pending) >= self._broker.max_inflight and self._state == _CONNECTED:
            self._pause(_PAUSE_INFLIGHT)

    def _original_settled(self, entry, failure):
        """The copy a dropped connection was storing is routed: ``entry``, this
        connection's PUBREC for its retransmission, may go (after it: what this
        connection received later is routed after it too). Or that copy failed: this
        connection closes unacknowledged, as for its own messages, and the client sends
        it again (then stored: the id is free)."""
        entry[2] = True
        if failure is not None:
            self._store_failed(failure, 0)  # closes a connected client; counted by the original
        self._release_settled()

    def _release_settled(self):
        """Release what the FIFO's head has settled: acks and routing while connected,
        routing alone once closed."""
        if self._state == _CONNECTED:
            if self._pending[0][2]:
                self._release()
        elif self._pending:
            self._release_closed()

    def _settled(self, entries, failure):
        """The store's ``notify``: ``entries`` (FIFO entries) are committed, or failed.

        One call may settle many entries (a store settles a batch per connection at
        once), so their acks go out in one write from ``_release``. Entries that settle
        after the connection closed get no ack; what was committed is still routed
        (``_release_closed``).
        """
        if failure is None:
            self._broker.stored += len(entries)
        else:
            for entry in entries:
                entry[1] = None  # not stored: nothing of it to route, ever
        for entry in entries:
            entry[2] = True
        session = self._after_close
        if failure is not None and session is not None and session.qos2_pending:
            _release_waiters(session, entries, failure)  # successes: _release_closed
        if failure is not None:
            self._store_failed(failure, len(entries))  # closes a connected client
        self._release_settled()

    def _release_closed(self):
        """After the close: route what the store committed, in receive order, no acks.

        A message in the database must also reach its subscribers and the retained
        store, or ``mosquitto_pub -r`` (PUBLISH, then DISCONNECT before the commit) would
        be stored and never retained, and a persistent client that publishes and never
        comes back would have its data stored and never delivered. A persistent client
        that does come back retransmits its unacknowledged QoS 1/2 messages
        [MQTT-4.4.0-1]: a QoS 1 one is then stored and routed again (at least once, as
        QoS 1 allows); a QoS 2 one is not (exactly once): its id stays taken while this
        connection's copy is being stored, and the retransmission's PUBREC waits for
        that commit (``_shutdown``, ``_on_publish``). The will is in this FIFO too,
        after them (``_publish_will``).
        """
        pending = self._pending
        session = self._after_close
        while pending and pending[0][2]:
            entry = pending.popleft()
            message = entry[1]
            if message is not None:  # None: not stored, or an ack alone
                self._route((message,))
                if entry[3] and session is not None and session.qos2_pending:
                    # Routed: retransmissions waiting for it may go (after it, so what
                    # their connection received later is routed after it too).
                    _release_waiters(session, (entry,), None)
        if not pending:
            self._pending = None
            unrouted = self._broker.unrouted
            if unrouted.get(self._client_id) is self:
                # All handed on: the next connection routes after what we routed after.
                before = _anchor(self._route_after)
                if before is None:
                    del unrouted[self._client_id]
                    # Everything routed: drop the links, or a client that drops and
                    # reconnects again and again would keep every old connection alive.
                    self._route_after = None
                    session = self._broker.sessions.get(self._client_id)
                    if session is not None and session.protocol is not None:
                        session.protocol._route_after = None
                else:
                    unrouted[self._client_id] = before

    def _route(self, messages):
        """Route ``messages`` (in receive order) after whatever this client's earlier
        connections received and still have to route.

        Across a drop and a reconnect the old connection's messages can commit after
        the new one's (a batch retried after a 503): routed as they commit, an older
        message on a topic would overtake a newer one [MQTT-4.6.0-6], and a retained
        value come back stale. So while an earlier connection has messages to route,
        ours are queued at the end of its FIFO, routed when it gets there.
        """
        before = self._route_after
        if before is not None:
            before = self._route_after = _anchor(before)
            if before is not None:
                before._pending.extend([None, message, True, 0] for message in messages)
                return
        route = self._broker.route
        for message in messages:
            route(message)

    def _release(self):
        """Write acks and route messages from the head of the FIFO while stored.

        The acks released together leave in one write, in order, before the messages are
        routed (a connection subscribed to its own topic sees its PUBACKs first, then the
        deliveries; MQTT orders neither against the other).
        """
        pending = self._pending
        popleft = pending.popleft
        acks = []
        messages = []
        while pending and pending[0][2]:
            ack, message, _, _ = popleft()
            if ack is not None:
                acks.append(ack)
            if message is not None:
                messages.append(message)
        if acks:
            self.transport.write(acks[0] if len(acks) == 1 else b"".join(acks))
        if messages:
            self._route(messages)
        if self._paused & _PAUSE_INFLIGHT and len(pending) < self._broker.max_inflight:
            self._last_seen = self._clock.seconds()  # keepalive counts from when we read again
            self._unpause(_PAUSE_INFLIGHT)

    def _store_failed(self, failure, count=1):
        self._broker.store_failures += count
        if self._state != _CONNECTED:
            return  # already closing; its QoS 2 ids were released in _shutdown
        reason = None
        if failure.check(StoreRejected):
            # An expected outcome (commit too slow, refused, overload): a reason, no traceback.
            reason = failure.value.reason
            log.warn("store failed for {client_id}: {reason}; closing without ack",
                     client_id=self._client_id, reason=reason)
        else:
            log.failure("store failed for {client_id}: closing without ack", failure,
                        client_id=self._client_id)
        self._close("store failed", detail=reason)

    # -- other packets -----------------------------------------------------------------

    def _on_pubrel(self, packet):
        session = self._session
        ids = session.inbound_qos2
        if ids:
            waiting = session.qos2_pending
            if not (waiting and packet.packet_id in waiting):
                # (A PUBREL before its PUBREC, for a copy still being stored by a dropped
                # connection, must not free the id: a new message with it would be
                # stored and the waiting retransmission never answered.)
                ids.discard(packet.packet_id)
        pubcomp = encode_pubcomp(packet.packet_id)  # also for unknown ids
        if self._pending:
            # After the acks already queued: one may be a retransmit's PUBREC for this
            # id, and arriving after the PUBCOMP it would acknowledge the id's next,
            # uncommitted message.
            self._pending.append([pubcomp, None, True, 0])
        else:
            self.transport.write(pubcomp)

    def _on_puback(self, packet):
        self._session.puback(packet.packet_id)

    def _on_pubrec(self, packet):
        self._session.pubrec(packet.packet_id)

    def _on_pubcomp(self, packet):
        self._session.pubcomp(packet.packet_id)

    def _on_subscribe(self, packet):
        broker = self._broker
        session = self._session
        codes = broker.subscribe(session, packet.topics)
        self.transport.write(encode(Suback(packet.packet_id, tuple(codes))))
        broker.send_retained(session, packet.topics)

    def _on_unsubscribe(self, packet):
        self._broker.unsubscribe(self._session, packet.topics)
        self.transport.write(encode(Unsuback(packet.packet_id)))

    def _on_pingreq(self, packet):
        self.transport.write(PINGRESP_BYTES)

    def _on_disconnect(self, packet):
        self._close("client disconnect", will=False)  # [MQTT-3.1.2-10]

    # -- IPushProducer: the transport's write buffer is full / drained -----------------
    #
    # Registered with the transport once connected, so a client that reads slower than
    # we write cannot grow our memory: while its buffer is over the transport's limit,
    # QoS 0 messages to it are dropped (Session.deliver counts them), QoS 1/2 stay
    # bounded by max_inflight, and we stop reading from it, so a publisher that never
    # reads its PUBACKs stops being served instead of piling them up.

    def pauseProducing(self):
        self.writes_blocked = True
        self._pause(_PAUSE_WRITES)

    def resumeProducing(self):
        self.writes_blocked = False
        # The client drained its socket: it is alive and reading. Its packets wait unread
        # while we do not read, so keepalive counts from here.
        self._last_seen = self._clock.seconds()
        session = self._session
        if session is not None:
            session.drained()  # may fill the socket again: then stay paused
        if not self.writes_blocked:
            self._unpause(_PAUSE_WRITES)

    def stopProducing(self):
        self.writes_blocked = True

    # -- flow control and closing ------------------------------------------------------

    def _pause(self, bit):
        if not self._paused:
            self.transport.pauseProducing()
        self._paused |= bit

    def _unpause(self, bit):
        if self._paused & bit:
            self._paused &= ~bit
            if not self._paused and self._state < _CLOSED:
                self.transport.resumeProducing()

    def _close(self, reason, abort=False, will=True, detail=None):
        """Close this connection (and only this one) for ``reason``, once."""
        if self._state >= _CLOSED:
            return
        self._shutdown(reason, will, detail)
        if abort:
            self.transport.abortConnection()
        else:
            if self._paused:
                # Read again: a transport that is never read cannot finish closing. Over
                # TLS loseConnection waits for the client's close_notify (or its EOF), so
                # a connection closed with reading paused (a full window, a takeover, a
                # store failure) was never released. Input after the close is ignored.
                self._paused = 0
                self.transport.resumeProducing()
            # A transport with a registered producer closes only once it is unregistered.
            if self._producer_registered:
                self._producer_registered = False
                self.transport.unregisterProducer()
            self.transport.loseConnection()
            # The keepalive timer's slot (cancelled by _shutdown); connectionLost cancels it.
            self._timer = self._clock.callLater(_CLOSE_GRACE, self.transport.abortConnection)

    def _shutdown(self, reason, will=True, detail=None):
        """Leave the broker: drop pending acks, detach the session, publish the will."""
        state = self._state
        self._state = _CLOSED
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        if state != _CONNECTED or not will:
            self._will = None  # [MQTT-3.1.2-10] on DISCONNECT; none before CONNACK
        session = self._session
        pending = self._pending
        if pending:
            persistent = session is not None and not session.clean
            ids = session.inbound_qos2 if session is not None else None
            for entry in pending:
                qos2_id = entry[3]
                if not qos2_id:
                    continue
                if persistent and entry[1] is not None:
                    # Being stored, or stored and waiting for an earlier message to be
                    # routed first: its id stays taken, and a retransmission on a later
                    # connection waits for it to be routed instead of being stored again
                    # (_on_publish; released by _release_waiters).
                    waiting = session.qos2_pending
                    if waiting is None:
                        waiting = session.qos2_pending = {}
                    waiting[qos2_id] = [entry, []]
                elif ids:
                    # Not stored (failed), or a clean session's (it ends here): a
                    # retransmission is stored, not answered as a duplicate.
                    ids.discard(qos2_id)
            # The FIFO stays until the store settles it: see _release_closed.
            if persistent:
                self._after_close = session
            self._release_closed()
        broker = self._broker
        if session is not None:
            broker.detach(session, self)
        if self._notify is not None and broker.forget is not None:
            broker.forget(self._notify)  # it will not submit again (the webhook's linger)
        if self._pending:
            broker.unrouted[self._client_id] = self  # the next connection routes after us
        if self._will is not None:
            self._publish_will()  # after what was received before the drop
        log.info("disconnect {client_id} {peer}: {reason}", client_id=self._client_id,
                 peer=_peer(self.transport), reason=reason, detail=detail)


_HANDLERS = {
    Connect: MQTTServerProtocol._on_connect,
    Puback: MQTTServerProtocol._on_puback,
    Pubrec: MQTTServerProtocol._on_pubrec,
    Pubrel: MQTTServerProtocol._on_pubrel,
    Pubcomp: MQTTServerProtocol._on_pubcomp,
    Subscribe: MQTTServerProtocol._on_subscribe,
    Unsubscribe: MQTTServerProtocol._on_unsubscribe,
    Pingreq: MQTTServerProtocol._on_pingreq,
    Disconnect: MQTTServerProtocol._on_disconnect,
}


def _anchor(protocol):
    """The connection at whose FIFO end routing after ``protocol`` queues: ``protocol``
    itself while it has messages to route, else whatever it routed after (a closed
    connection hands its messages on to an earlier one's FIFO); None once all is routed."""
    while protocol is not None and not protocol._pending:
        protocol = protocol._route_after
    return protocol


@one_off
def _settle_wills(tokens, failure):
    """``notify`` of wills; ``tokens`` are (connection whose FIFO holds it, entry).

    One function for all wills, marked one-off: a store's batching must not wait for a
    will's submitter to publish again (it is no connection). A will the store failed
    is logged here: nobody resends it.
    """
    for target, entry in tokens:
        if failure is not None:
            log.warn("will of {client_id} not stored, not published: {reason}",
                     client_id=entry[1].client_id, reason=failure.getErrorMessage())
        try:
            target._settled([entry], failure)
        except Exception:
            # One call carries the wills of many clients: one that breaks must not
            # leave the others (and all routing behind them) unsettled.
            log.failure("settling the will of {client_id} failed",
                        client_id=target._client_id)


def _release_waiters(session, entries, failure):
    """``entries`` of a dropped connection were routed (``failure`` None) or failed:
    retransmissions waiting for them get their PUBREC, or, if the copy failed, its id is
    freed and they fail too."""
    waiting = session.qos2_pending
    for entry in entries:
        qos2_id = entry[3]
        record = waiting.get(qos2_id) if qos2_id else None
        if record is None or record[0] is not entry:
            continue
        del waiting[qos2_id]
        if failure is not None and session.inbound_qos2:
            session.inbound_qos2.discard(qos2_id)
        for protocol, ack in record[1]:
            protocol._original_settled(ack, failure)


class MQTTServerFactory(ServerFactory):
    """Builds one MQTTServerProtocol per accepted (or handed-over) socket.

    A worker that adopts sockets from a master calls ``buildProtocol`` and
    ``makeConnection`` itself, so nothing here depends on how the socket was accepted.
    """

    protocol = MQTTServerProtocol
    noisy = False

    def __init__(self, broker, clock):
        self.broker = broker
        self.clock = clock

    def buildProtocol(self, addr):
        protocol = MQTTServerProtocol(self.broker, self.clock)
        protocol.factory = self
        return protocol
