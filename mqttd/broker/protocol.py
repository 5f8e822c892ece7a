"""The adapter between one client socket and the broker: MQTTServerProtocol.

It owns what is per connection and nothing more: the stream parser, the connection's
states, keepalive, flow control and closing. Who the connection is to the broker (the
CONNECT's decision and CONNACK, its session and the session's packets, its will) is its
``Membership`` (``mqttd.broker.membership``); what waits for its commit, its
``InboundQueue`` (``mqttd.broker.inbound``: acks in receive order, routing in order
across reconnects, QoS 2 across drops, wills); sessions, routing and retained messages
live in ``Broker``.

A connection whose inbound FIFO holds ``max_inflight`` entries stops reading from its
socket (backpressure, not drops), and so does one that publishes while the message sink
is full, until it drains (``mqttd.broker.pressure``); why it is not reading is its
``ReadPause`` (``mqttd.broker.reading``), what reads again its ``FlowControl``
(``mqttd.broker.flow``), and its one timer (connect deadline,
keepalive, close grace) is its ``Liveness`` (``mqttd.broker.liveness``), which does not
count our own silence against the client. A store failure sends no ack and closes the
connection, so the device retransmits. How it closes is ``Closing``
(``mqttd.broker.closing``); what it logs, ``mqttd.broker.connection_log``.
"""
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger

from mqttd.broker import connection_log
from mqttd.broker.closing import Closing
from mqttd.broker.flow import (_AUTHENTICATING, _AWAIT_CONNECT, _CLOSED, _CONNECTED,
                               _REFUSED, FlowControl)
from mqttd.broker.liveness import Liveness
from mqttd.broker.membership import SESSION_PACKETS, Membership
from mqttd.broker.reading import AUTH, INFLIGHT, PRESSURE, SUBSCRIBE, ReadPause
from mqttd.codec import PINGRESP_BYTES, Parser, ProtocolError, encode
from mqttd.codec.packets import Connack, Connect, Disconnect, Pingreq, Publish, Pubrel, Subscribe

__all__ = ["MQTTServerProtocol", "MQTTServerFactory"]

log = Logger()


class MQTTServerProtocol(FlowControl, Closing, Protocol):
    """One MQTT 3.1.1 client connection.

    Slotted (the Twisted base classes still allow a ``__dict__``, which stays unused) so
    that 10,000 idle connections stay small. ``inbound`` is the InboundQueue, created
    at the first PUBLISH or PUBREL (an idle connection has none).
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
        "_member",
        "_liveness",
        "inbound",
        "_reading",
        "_backlog",
        "writes_blocked",
        "_producer_registered",
        "decided",
        "trace",
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
        self._member = None  # from connectionMade on
        self._liveness = None  # from connectionMade on
        self.inbound = None
        self._reading = None  # from connectionMade on
        self._backlog = None
        self.writes_blocked = False
        self._producer_registered = False
        # The master gate's AuthResult, set by the worker that adopted this socket
        # before its CONNECT is read (Admission.admit's ``decided``); None: ask here.
        self.decided = None
        # Its ClientTrace (mqttd.manage.tracer) while the broker's trace is on, else None.
        self.trace = None

    # -- Twisted protocol interface ----------------------------------------------------

    def connectionMade(self):
        broker = self._broker
        if not broker.connection_opened():
            self._state = _REFUSED
            connection_log.refused(broker.connection_log, self.transport, "max connections")
            if broker.tracer is not None:
                broker.tracer.refused(self.transport.getPeer(), "broker.max_connections")
            self.transport.abortConnection()
            return
        if broker.tracer is not None:  # counted both ways from here (a counting transport)
            self.trace, self.transport = broker.tracer.opened(self.transport)
        config = broker.config
        # Until its CONNECT is read, a client may make us hold max_connect_size at most.
        self._parser = Parser(config.max_packet_size, server=True,
                              max_connect_size=config.max_connect_size)
        self._member = Membership(broker, self._clock, self.transport, self.trace)
        self._reading = ReadPause(self.transport)
        self._liveness = Liveness(self._clock, self._reading)
        self._liveness.start(config.idle_timeout, self._timeout)
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
        trace = self.trace
        if trace is not None:
            trace.bytes_in += len(data)
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
        self._liveness.saw()
        self._process(packets)

    def connectionLost(self, reason=None):
        if self._state == _REFUSED:
            return
        if self._state != _CLOSED:
            self._shutdown("connection lost")
        else:
            self._liveness.cancel()  # the close grace (_close): closed in time
        broker = self._broker
        broker.connection_closed()
        if self._held:
            broker.partial_input.release(self, self._held)
            self._held = 0
        self._parser = None
        self._member.forget_session()
        self._backlog = None

    # -- the packet loop ---------------------------------------------------------------

    def _process(self, packets):
        """Handle ``packets`` in order; keep the rest aside if CONNECT went async."""
        handlers = _HANDLERS
        for i, packet in enumerate(packets):
            if type(packet) is Publish:
                # Not a handler of its own: one Python call less per PUBLISH.
                inbound = self.inbound
                if inbound is None:
                    inbound = self._open_inbound()
                # received_at: the time of the read that carried it (set by
                # dataReceived, and by _accepted for packets that waited for CONNACK).
                if inbound.publish(packet, self._liveness.last_seen):
                    self._reading.pause(INFLIGHT)  # the FIFO is full
                throttle = self._broker.throttle
                if throttle.full and self._state == _CONNECTED:
                    # The sink is full: stop reading; the rest of this read waits in
                    # _backlog until it drains (sink_drained).
                    self._reading.pause(PRESSURE)
                    throttle.hold(self)
                    self._backlog = packets[i + 1:]
                    return
            else:
                handler = handlers.get(type(packet))
                if handler is not None:
                    handler(self, packet)
                else:  # its session's: SUBSCRIBE, UNSUBSCRIBE, the acks of our deliveries
                    SESSION_PACKETS[type(packet)](self._member, packet)
                if self._backlog is not None:  # a SUBSCRIBE waits for its save
                    self._backlog.extend(packets[i + 1:])
                    return
            if self._state != _CONNECTED:
                if self._state == _AUTHENTICATING:
                    self._backlog = packets[i + 1:]
                return

    def _protocol_error(self, error):
        self._broker.metrics.mqtt_protocol_errors += 1
        if error.connack_code is not None and self._state < _CONNECTED:
            self.transport.write(encode(Connack(False, error.connack_code)))
        self._close("protocol error", detail=error.reason)

    # -- CONNECT -----------------------------------------------------------------------

    def _on_connect(self, packet):
        self._state = _AUTHENTICATING
        self._member.join(self, packet, self._accepted, self._close, self.decided)
        if self._state == _AUTHENTICATING:
            # Pending: stop reading; packets already parsed wait in _backlog.
            self._reading.pause(AUTH)

    def _accepted(self, keepalive):
        """CONNACK went out (``Membership.join``): serve, starting with the backlog."""
        self._state = _CONNECTED
        # From now: also the received_at of the publishes that waited in the backlog.
        self._liveness.keepalive(keepalive, self._broker.config.max_keepalive,
                                 self._timeout)
        self.transport.registerProducer(self, True)
        self._producer_registered = True
        self._member.session.resume()
        backlog = self._backlog
        self._backlog = None
        self._reading.resume(AUTH)
        if backlog:
            self._process(backlog)

    @property
    def client_id(self):
        """The client id this connection is (or, before CONNACK, asks to be) known as."""
        return self._member.client_id

    @property
    def username(self):
        """The CONNECT's username (a token user's is the token: never show it whole)."""
        return self._member.username

    @property
    def account(self):
        """The account the connection's decision named (its namespace), or None."""
        return self._member.account

    # -- keepalive and idle timeout ----------------------------------------------------

    def _timeout(self):
        """Our Liveness saw a deadline pass: which one depends on how far we got."""
        state = self._state
        if state == _CONNECTED:
            self._close("keepalive timeout", abort=True)
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
        if self._reading.held_by_us():
            # We stopped reading (authentication, a full window): the client cannot
            # finish it, so its deadline starts again. A socket it does not drain
            # (WRITES alone) is its own silence, as for keepalive.
            self._broker.partial_input.renew(self)
            return False
        self._close("packet timeout", abort=True)
        return True

    # -- inbound PUBLISH: the InboundQueue stores, acks in order, routes ---------------

    def _open_inbound(self):
        self.inbound = self._member.open_inbound(self)
        return self.inbound

    def publish_denied(self, topic):
        """Its inbound queue refused a PUBLISH's ``topic`` (``mqttd.broker.tenancy``):
        close without an ack, as MQTT 3.1.1 has no negative one."""
        self._close("publish denied", detail=self._member.refused("publish", topic))

    def store_failed(self, failure):
        """The store did not take a message of ours: close without ack, so the client
        sends it again."""
        if self._state != _CONNECTED:
            return  # already closing; its QoS 2 ids were released by the queue's close
        reason = connection_log.store_failed(self._member.client_id, failure)
        self._close("store failed", detail=reason)

    # -- other packets -----------------------------------------------------------------

    def _on_pubrel(self, packet):
        inbound = self.inbound
        if inbound is None:
            inbound = self._open_inbound()
        inbound.pubrel(packet.packet_id)

    def _on_subscribe(self, packet):
        saved = self._member.subscribe(packet)
        if saved is not None:  # what the client sent after it waits behind its SUBACK
            self._backlog = []
            self._reading.pause(SUBSCRIBE)
            saved.addCallbacks(self._subscribed, self._subscription_not_saved)

    def _subscribed(self, suback):
        if self._state != _CONNECTED:
            return  # closed while its subscription was being saved
        suback()
        backlog, self._backlog = self._backlog, None
        self._liveness.saw()  # we read again from here
        self._reading.resume(SUBSCRIBE)
        if backlog:
            self._process(backlog)

    def _subscription_not_saved(self, failure):
        log.failure("subscription of {client_id} not saved: closing without SUBACK",
                    failure, client_id=self._member.client_id)
        self._close("subscription not saved")

    def _on_pingreq(self, packet):
        self.transport.write(PINGRESP_BYTES)

    def _on_disconnect(self, packet):
        self._close("client disconnect", will=False)  # [MQTT-3.1.2-10]

# The connection's own packets; the others are its session's (SESSION_PACKETS).
_HANDLERS = {
    Connect: MQTTServerProtocol._on_connect,
    Pubrel: MQTTServerProtocol._on_pubrel,
    Subscribe: MQTTServerProtocol._on_subscribe,
    Pingreq: MQTTServerProtocol._on_pingreq,
    Disconnect: MQTTServerProtocol._on_disconnect,
}


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
