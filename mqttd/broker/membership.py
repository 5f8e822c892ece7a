"""Who one connection is to the broker, from its CONNECT's decision to its leaving.

A connection joins the broker once (its CONNECT is admitted or refused, the session is
attached, the CONNACK goes out), talks to its session while connected (SUBSCRIBE,
UNSUBSCRIBE, the acks of the messages delivered to it) and leaves once (the session is
detached, the will published, the line logged). All of it deals in the same state: the
client id (the CONNECT's until the decision, then the decided one), the username, the
session, the will held from CONNACK to the drop, and the CONNECT still being decided.
Kept here, that state is what ``MQTTServerProtocol`` asks about and never rewrites, so
the protocol is left with bytes, packets, timers and flow control; and the CONNECT's
decision (``Admission``, later the master's gate) has one caller.
"""
from functools import partial

from mqttd.broker import connection_log
from mqttd.broker.admission import Refused
from mqttd.codec import encode
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_SERVER_UNAVAILABLE,
    Connack,
    Puback,
    Pubcomp,
    Pubrec,
    Suback,
    Unsuback,
    Unsubscribe,
)

__all__ = ["Membership", "SESSION_PACKETS"]


class Membership:
    """The broker membership of one connection, whose CONNACK goes to ``transport``.

    ``client_id``, ``username`` and ``session`` are read by the connection (its inbound
    queue, its handlers and its log lines); only this object sets them. Slotted: one
    exists per connection. The connection itself (what ``broker.attach`` binds and
    ``take_over`` closes) is passed to ``join`` and ``leave``, not kept: a closed
    connection and its membership hold no cycle and go by reference counting.
    """

    __slots__ = ("_broker", "_clock", "_transport", "_connect", "_will", "_ticket",
                 "client_id", "username", "account", "session")

    def __init__(self, broker, clock, transport):
        self._broker = broker
        self._clock = clock
        self._transport = transport
        self._connect = None  # the CONNECT being decided
        self._will = None  # from CONNACK until the connection leaves
        self._ticket = None  # the gate's hold on this connection, released when it leaves
        self.client_id = None
        self.username = None
        self.account = None  # the client's account (its topic namespace), if it has one
        self.session = None

    def join(self, connection, connect, accepted, refused, decided=None):
        """Ask the broker's admission about ``connect`` from ``connection``. Once it
        answers (now or later), send the CONNACK and call ``accepted(keepalive)`` or
        ``refused(reason)``; neither if the connection left while it waited.
        ``decided``: the master gate's AuthResult for it (``Admission.admit``)."""
        self.client_id = connect.client_id  # until the decision: the final one comes with it
        self.username = connect.username
        self._connect = connect
        d = self._broker.admission.admit(connect, self._transport.getPeer(), decided)
        d.addCallback(self._decided, connection, accepted, refused)

    def _decided(self, decision, connection, accepted, refused):
        connect = self._connect
        if connect is None:  # the socket went away while we waited (leave)
            if type(decision) is not Refused and decision.ticket is not None:
                decision.ticket.release()
            return
        self._connect = None
        self.client_id = decision.client_id
        broker = self._broker
        transport = self._transport
        if type(decision) is Refused:
            if decision.by_auth:
                connection_log.auth_refused(broker.connection_log, transport,
                                            self.client_id, connect.username, decision.code)
            transport.write(encode(Connack(False, decision.code)))
            refused(decision.reason)
            return
        self.account = decision.account
        self._ticket = decision.ticket
        session, present = broker.attach(connection, self.client_id,
                                         connect.clean_session)
        if session is None:  # max_sessions, and none offline to evict
            transport.write(encode(Connack(False, CONNACK_SERVER_UNAVAILABLE)))
            refused("max sessions")
            return
        self.session = session
        self._will = connect.will
        transport.write(encode(Connack(present, CONNACK_ACCEPTED)))
        connection_log.connected(broker.connection_log, transport, self.client_id,
                                 connect, present)
        accepted(connect.keepalive)

    def leave(self, connection, inbound, reason, detail, will=True):
        """``connection`` is closing for ``reason`` (once): detach the session, publish
        the will unless ``will`` is False (a DISCONNECT [MQTT-3.1.2-10]), after what
        ``inbound`` (its InboundQueue, or None) received before the drop, and log it.
        A CONNECT still being decided is forgotten."""
        self._connect = None
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.release()
        broker = self._broker
        session = self.session
        if session is not None:
            broker.detach(session, connection)
        last_will, self._will = self._will, None
        if will and last_will is not None:
            broker.inbound.publish_will(inbound, self.client_id, self.username, last_will,
                                        self._clock.seconds())
        connection_log.disconnected(broker.connection_log, self._transport, self.client_id,
                                    reason, detail)

    def open_inbound(self, owner):
        """The InboundQueue of ``owner`` (the connection), for its first PUBLISH or PUBREL."""
        return self._broker.inbound.open(owner, self._transport, self.client_id,
                                         self.username, self.session)

    # -- the session's packets (SESSION_PACKETS), once connected -----------------------

    def puback(self, packet):
        self.session.puback(packet.packet_id)

    def pubrec(self, packet):
        self.session.pubrec(packet.packet_id)

    def pubcomp(self, packet):
        self.session.pubcomp(packet.packet_id)

    def unsubscribe(self, packet):
        self._broker.unsubscribe(self.session, packet.topics)
        self._transport.write(encode(Unsuback(packet.packet_id)))

    def subscribe(self, packet):
        """SUBSCRIBE: None once its SUBACK is written. For a persistent session, whose
        SUBACK promises the subscription survives a crash, a Deferred instead that fires
        with the call writing the SUBACK once the subscription is committed (the
        connection may be gone by then: its caller decides)."""
        broker = self._broker
        session = self.session
        codes = broker.subscribe(session, packet.topics)
        saved = broker.subscription_saved(session)
        suback = partial(self._suback, session, packet, codes)
        if saved is None:
            suback()
            return None
        return saved.addCallback(lambda _: suback)

    def _suback(self, session, packet, codes):
        self._transport.write(encode(Suback(packet.packet_id, tuple(codes))))
        self._broker.send_retained(session, packet.topics)

    def forget_session(self):
        """The connection is gone: drop the reference (the broker keeps what it keeps)."""
        self.session = None


SESSION_PACKETS = {
    Puback: Membership.puback,
    Pubrec: Membership.pubrec,
    Pubcomp: Membership.pubcomp,
    Unsubscribe: Membership.unsubscribe,
}
"""The packets a connection hands to its Membership (its session's), by type: called as
``SESSION_PACKETS[type(packet)](membership, packet)``, no Python call more than when the
connection handled them itself."""
