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

The account the decision names is the connection's topic namespace (``topics``, a
``mqttd.broker.tenancy.ClientTopics``): its will, subscriptions and publishes are
mounted and judged there, and its session is the account's (``session_key``).
"""
from functools import partial

import attrs

from mqttd.broker import connection_log
from mqttd.broker.admission import Refused
from mqttd.codec import encode
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    SUBACK_FAILURE,
    Connack,
    Puback,
    Pubcomp,
    Pubrec,
    Suback,
    Unsuback,
    Unsubscribe,
)
from mqttd.namespace import reserved, session_key

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
                 "client_id", "username", "account", "topics", "session", "trace")

    def __init__(self, broker, clock, transport, trace=None):
        self._broker = broker
        self._clock = clock
        self._transport = transport
        # The connection's ClientTrace (mqttd.manage.tracer), or None: trace off.
        self.trace = trace
        self._connect = None  # the CONNECT being decided
        self._will = None  # from CONNACK until the connection leaves
        self._ticket = None  # the gate's hold on this connection, released when it leaves
        self.client_id = None
        self.username = None
        self.account = None  # the client's account (its topic namespace), if it has one
        self.topics = None  # its ClientTopics, from the decision on
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
        d.addCallback(self._decided, connection, accepted, refused, decided is None)

    def _decided(self, decision, connection, accepted, refused, asked=True):
        connect = self._connect
        if connect is None:  # the socket went away while we waited (leave)
            if type(decision) is not Refused and decision.ticket is not None:
                decision.ticket.release()
            return
        self._connect = None
        self.client_id = decision.client_id
        broker = self._broker
        transport = self._transport
        if self.trace is not None:  # asked: its auth result is ours (the master's else)
            _trace_decision(self.trace, decision, connect, asked)
        if type(decision) is Refused:
            if decision.by_auth:
                connection_log.auth_refused(broker.connection_log, transport,
                                            self.client_id, connect.username, decision.code,
                                            broker.static_users)
            else:  # the gate counts its own (edge_gate_refused)
                broker.metrics.mqtt_connect_refused[decision.reason] += 1
            transport.write(encode(Connack(False, decision.code)))
            refused(decision.reason)
            return
        self.account = decision.account
        self._ticket = decision.ticket
        refusal = self._out_of_bounds(connect)
        if refusal is not None:
            self._refuse(*refusal, refused)
            return
        session, present = broker.attach(
            connection, session_key(self.account, self.client_id), connect.clean_session)
        if session is None:  # max_sessions, and none offline to evict
            self._refuse(CONNACK_SERVER_UNAVAILABLE, "max sessions", refused)
            return
        self.session = session
        transport.write(encode(Connack(present, CONNACK_ACCEPTED)))
        connection_log.connected(broker.connection_log, transport, self.client_id,
                                 connect, present, broker.static_users)
        if self.trace is not None:
            self.trace.connected(connect.clean_session, connect.keepalive, present)
        accepted(connect.keepalive)

    def _out_of_bounds(self, connect):
        """(CONNACK code, reason) if the accepted CONNECT names what its namespace
        does not hold: a will topic outside it or denied by the ACL (mosquitto refuses
        such a CONNECT too), or, without an account, a client id under the mounts,
        where accounts' sessions are (it would take one over). Else None; the will is
        kept mounted."""
        broker = self._broker
        if self.account is None and reserved(self.client_id):
            broker.metrics.mqtt_client_ids_refused += 1
            return CONNACK_IDENTIFIER_REJECTED, "client id reserved"
        topics = self.topics = broker.tenancy.for_client(self.client_id, connect.username,
                                                         self.account)
        will = connect.will
        if will is not None:
            topic = topics.publish(will.topic)
            if topic is None:
                reason = self.refused("will", will.topic)
                return CONNACK_NOT_AUTHORIZED, f"will denied by {reason}"
            self._will = will if topic is will.topic else attrs.evolve(will, topic=topic)
        return None

    def refused(self, action, topic):
        """Count and log that ``topics`` refused ``topic`` for ``action`` ("publish",
        "subscribe", "will"); what refused it ("namespace" or "acl")."""
        return self._broker.tenancy.refused(self.topics, self._transport, self.client_id,
                                            self.username, action, topic)

    def _refuse(self, code, reason, refused):
        """Refuse an accepted CONNECT after all: its CONNACK, and the gate's seat back."""
        self._will = None
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.release()
        self._broker.metrics.mqtt_connect_refused[reason] += 1
        if self.trace is not None:
            self.trace.refused(code, reason)
        self._transport.write(encode(Connack(False, code)))
        refused(reason)

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
        if self.trace is not None:
            self.trace.disconnected(reason, detail)

    def open_inbound(self, owner):
        """The InboundQueue of ``owner`` (the connection), for its first PUBLISH or PUBREL."""
        return self._broker.inbound.open(owner, self._transport, self.client_id,
                                         self.username, self.session, self.topics,
                                         self.trace)

    # -- the session's packets (SESSION_PACKETS), once connected -----------------------

    def puback(self, packet):
        self.session.puback(packet.packet_id)

    def pubrec(self, packet):
        self.session.pubrec(packet.packet_id)

    def pubcomp(self, packet):
        self.session.pubcomp(packet.packet_id)

    def unsubscribe(self, packet):
        mounted = self.topics.unsubscribe
        self._broker.unsubscribe(self.session, [mounted(f) for f in packet.topics])
        self._transport.write(encode(Unsuback(packet.packet_id)))

    def subscribe(self, packet):
        """SUBSCRIBE: None once its SUBACK is written. For a persistent session, whose
        SUBACK promises the subscription survives a crash, a Deferred instead that fires
        with the call writing the SUBACK once the subscription is committed (the
        connection may be gone by then: its caller decides)."""
        broker = self._broker
        session = self.session
        granted, codes = self._judge(packet.topics)
        if self.trace is not None:
            self.trace.subscribed(packet.topics, codes)
        broker.subscribe(session, granted)
        saved = broker.subscription_saved(session)
        suback = partial(self._suback, session, packet, codes, granted)
        if saved is None:
            suback()
            return None
        return saved.addCallback(lambda _: suback)

    def _judge(self, requested):
        """((mounted filter, qos) granted, SUBACK codes): 0x80 for a filter outside the
        namespace or denied by the ACL [MQTT-3.9.3-1 allows the failure per filter]."""
        topics = self.topics
        granted = []
        codes = []
        for topic_filter, qos in requested:
            mounted = topics.subscribe(topic_filter)
            if mounted is None:
                self.refused("subscribe", topic_filter)
                codes.append(SUBACK_FAILURE)
            else:
                granted.append((mounted, qos))
                codes.append(qos)
        return granted, codes

    def _suback(self, session, packet, codes, granted):
        self._transport.write(encode(Suback(packet.packet_id, tuple(codes))))
        self._broker.send_retained(session, granted)

    def forget_session(self):
        """The connection is gone: drop the reference (the broker keeps what it keeps)."""
        self.session = None


def _trace_decision(trace, decision, connect, asked):
    """Tell ``trace`` who the CONNECT is and what was decided: the auth result if this
    broker ``asked`` its authenticator (the single process), a refusal of its own."""
    refusal = type(decision) is Refused
    client_id = decision.client_id  # None for a refused id: it may be 64 KiB long
    account = None if refusal else decision.account
    if asked and (not refusal or decision.by_auth):
        trace.authenticated(client_id, connect.username, account, decision.code if refusal
                            else 0, decision.reason if refusal else None,
                            decision.limit if refusal else None)
    else:
        trace.identify(client_id, connect.username, account)
    if refusal and not decision.by_auth:
        trace.refused(decision.code, decision.reason)


SESSION_PACKETS = {
    Puback: Membership.puback,
    Pubrec: Membership.pubrec,
    Pubcomp: Membership.pubcomp,
    Unsubscribe: Membership.unsubscribe,
}
"""The packets a connection hands to its Membership (its session's), by type: called as
``SESSION_PACKETS[type(packet)](membership, packet)``, no Python call more than when the
connection handled them itself."""
