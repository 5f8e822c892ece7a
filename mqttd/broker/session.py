"""One client's MQTT session: its subscriptions and the QoS 1/2 state that outlives sockets.

A session is what survives a disconnect when the client asked for clean_session=0: the
filters it subscribed to, the outbound messages it has not acknowledged yet (with their
packet ids, in send order), messages queued while it was offline, its in-flight window
was full or its socket was (bounded in messages and in bytes), and the inbound QoS 2
packet ids still waiting for PUBREL. Its memory is freed when it ends: a persistent one
when it expires or is evicted (``mqttd.broker.expiry``).

Everything here is per client and there may be 10,000+ idle ones, so the class is
slotted and every container is created on first use: an idle session with no
subscriptions holds a handful of pointers and nothing else.
"""
from collections import deque

from twisted.logger import Logger

from mqttd.codec import encode_publish, encode_pubrel
from mqttd.namespace import mount_length

__all__ = ["Session"]

log = Logger()

# Marker stored in ``Session.inflight`` for an outbound QoS 2 message whose PUBREC has
# arrived: only PUBREL/PUBCOMP remain, the message itself is no longer needed.
PUBREL_PENDING = None

_GONE = object()  # not in ``inflight``


class Session:
    """Subscriptions and QoS state of one client id, attached to at most one connection.

    ``client_id`` is the session's key: the client id, within its account's mount for
    an account's client (``mqttd.namespace.session_key``). ``protocol`` is the live
    connection (anything with a ``transport``) or None while the client is offline.
    ``inflight`` maps packet id -> ``(message, qos, retain)`` for PUBLISHes waiting for PUBACK/PUBREC, or -> ``PUBREL_PENDING`` once PUBREC arrived;
    dict order is send order, which redelivery on reconnect must keep [MQTT-4.4.0-1].
    """

    __slots__ = (
        "broker",
        "client_id",
        "clean",
        "protocol",
        "subscriptions",
        "inflight",
        "queue",
        "inbound_qos2",
        "qos2_pending",
        "backlog",
        "queued_bytes",
        "_resend",
        "_next_id",
        "_dropping",
        "_mount",
    )

    def __init__(self, broker, client_id, clean):
        self.broker = broker
        self.client_id = client_id
        self.clean = clean
        self.protocol = None
        self.subscriptions = None  # filter -> granted qos
        self.inflight = None  # packet id -> (message, qos, retain) | PUBREL_PENDING
        self.queue = None  # deque of (message, qos, retain)
        self.inbound_qos2 = None  # set of packet ids awaiting PUBREL from the client
        # packet id -> Qos2Wait: a QoS 2 message a dropped connection was still storing,
        # and the retransmissions whose PUBREC waits for it (kept by broker/inbound.py).
        self.qos2_pending = None
        self.backlog = None  # deque of (message, retain): retained QoS 0 for a full socket
        self.queued_bytes = 0  # payload + topic of the messages in ``queue``
        self._resend = None  # deque of (packet id, inflight entry) a reconnect still owes
        self._next_id = 0
        self._dropping = False
        # An account's session (``mqttd.namespace.session_key``): the length of the
        # mount its deliveries' topics lose, so the client sees its own topics.
        self._mount = mount_length(client_id)

    def __repr__(self):
        return f"<Session {self.client_id!r} clean={self.clean}>"

    # -- outbound delivery ---------------------------------------------------------------

    def deliver(self, message, qos, retain, hold=False):
        """Send ``message`` at ``qos`` now if the window and the socket allow, else queue it.

        QoS 0 is sent if online, dropped if not, and dropped while the client's socket is
        full: it reads slower than we write, and best effort means dropping, not
        buffering without bound (see MQTTServerProtocol.pauseProducing). Except with
        ``hold``, for the retained messages of a SUBSCRIBE, every one of which must be
        sent [MQTT-3.3.1-6]: a fast reader's socket is "full" too once one reactor turn
        writes over 64 kB (Twisted's buffer), as a retained set easily does. Those wait
        in ``backlog``, bounded by ``max_queued_messages``, and go out as the socket
        drains; live QoS 0 behind them is dropped, so they keep their order and the
        backlog only shrinks (the client is read again once it is empty).

        QoS 1/2 is written only while the socket is not full: otherwise it waits in the
        queue (bounded in messages and bytes, see ``_enqueue``), not in the transport,
        where a subscriber that stopped reading would hold ``max_inflight`` packets of
        up to ``max_packet_size`` each. ``drained`` sends it when the socket drains.
        """
        proto = self.protocol
        broker = self.broker
        if not qos:
            if proto is None:
                broker.metrics.mqtt_dropped["offline"] += 1
                return
            backlog = self.backlog
            if proto.writes_blocked or backlog:
                if not hold or (backlog is not None and len(backlog) >= broker.max_queued_messages):
                    broker.metrics.mqtt_dropped["slow"] += 1
                    return
                if backlog is None:
                    backlog = self.backlog = deque()
                backlog.append((message, retain))
                return
            topic = message.topic[self._mount:] if self._mount else message.topic
            proto.transport.write(encode_publish(topic, message.payload, 0, retain, False, None))
            broker.metrics.mqtt_delivered += 1
            return
        inflight = self.inflight
        if inflight is None:
            inflight = self.inflight = {}
        if (proto is not None and not self.queue and len(inflight) < broker.max_inflight
                and not proto.writes_blocked):
            pid = self._allocate_id(inflight)
            inflight[pid] = (message, qos, retain)
            topic = message.topic[self._mount:] if self._mount else message.topic
            proto.transport.write(encode_publish(topic, message.payload, qos, retain, False, pid))
            broker.metrics.mqtt_delivered += 1
            return
        self._enqueue(message, qos, retain)

    def _enqueue(self, message, qos, retain):
        """Queue a QoS 1/2 message, or drop it (counted) if the queue is full.

        Full means ``max_queued_messages`` messages, or ``max_queued_bytes`` of payload
        and topic (a message is counted in every queue that holds it: one shared copy
        or not, each queue is bounded on its own). An empty queue takes one message of
        any size: one that fits ``max_packet_size`` must never be undeliverable.
        """
        broker = self.broker
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        size = len(message.payload) + len(message.topic)
        if len(queue) >= broker.max_queued_messages or (
                queue and self.queued_bytes + size > broker.max_queued_bytes):
            # Drop the NEW message: the queued ones are older and were promised first.
            broker.metrics.mqtt_dropped["queue_full"] += 1
            if not self._dropping:
                self._dropping = True
                log.warn(
                    "queue full for {client_id}: dropping new messages (limits "
                    "{limit} messages, {limit_bytes} bytes)", client_id=self.client_id,
                    limit=broker.max_queued_messages, limit_bytes=broker.max_queued_bytes)
            return
        queue.append((message, qos, retain))
        self.queued_bytes += size
        if self.protocol is None and not self.clean:
            # A message can reach an offline session after a save whose cursor passed
            # its row (routed late: forwarded by another worker, or its commit's answer
            # slow). The next save puts the cursor back before it; a clean stop saves.
            broker.persistence.changed(self)

    def _allocate_id(self, inflight):
        """Next packet id in 1..65535 not used by an unacknowledged message.

        The caller guarantees fewer than 65535 ids are in use (max_inflight <= 65535 and
        allocation happens only below it), so the loop ends.
        """
        pid = self._next_id
        while True:
            pid = pid + 1 if pid < 0xFFFF else 1
            if pid not in inflight:
                self._next_id = pid
                return pid

    def pump(self):
        """Move queued messages into the in-flight window while there is room and the
        socket takes them (after any redelivery still waiting for it: order)."""
        queue = self.queue
        proto = self.protocol
        if not queue or proto is None or proto.writes_blocked or self._resend:
            return
        broker = self.broker
        inflight = self.inflight
        if inflight is None:
            inflight = self.inflight = {}
        limit = broker.max_inflight
        write = proto.transport.write
        while queue and len(inflight) < limit and not proto.writes_blocked:
            message, qos, retain = queue.popleft()
            self.queued_bytes -= len(message.payload) + len(message.topic)
            pid = self._allocate_id(inflight)
            inflight[pid] = (message, qos, retain)
            topic = message.topic[self._mount:] if self._mount else message.topic
            write(encode_publish(topic, message.payload, qos, retain, False, pid))
            broker.metrics.mqtt_delivered += 1
        if self._dropping and len(queue) < broker.max_queued_messages:
            self._dropping = False  # burst over: the next drop is logged again

    def drained(self):
        """The client's socket drained: send what waited for it, in order, until it is
        full again (a write can pause us on the spot): the redelivery of a reconnect,
        the retained QoS 0 messages of a SUBSCRIBE, then the queue."""
        proto = self.protocol
        if proto is None:
            return
        if self._resend:
            self._send_resend(proto)
        backlog = self.backlog
        if backlog:
            broker = self.broker
            write = proto.transport.write
            while backlog and not proto.writes_blocked:
                message, retain = backlog.popleft()
                topic = message.topic[self._mount:] if self._mount else message.topic
                write(encode_publish(topic, message.payload, 0, retain, False, None))
                broker.metrics.mqtt_delivered += 1
        if self.queue:
            self.pump()

    def detached(self):
        """The connection ended: QoS 0 is not kept for an offline client, and a
        redelivery not finished starts over on the next connection (``resume``)."""
        if self.backlog:
            self.broker.metrics.mqtt_dropped["offline"] += len(self.backlog)
        self.backlog = None
        self._resend = None

    def release(self):
        """The session ends (expired, evicted, replaced, or clean and closed): free the
        messages it holds. A connection that closed may still hold the session itself
        for its QoS 2 ids (``qos2_pending``), which are small and stay."""
        self.backlog = self.queue = self.inflight = self._resend = None
        self.queued_bytes = 0

    def resume(self):
        """On (re)attach: resend every unacknowledged message in order, then the queue.

        PUBLISHes go out again with DUP=1 and their original ids; those already PUBREC'd
        get their PUBREL again [MQTT-4.4.0-1]. As the socket takes them: what does not
        fit now follows from ``drained``.
        """
        if self.inflight:
            self._resend = deque(self.inflight.items())
            self._send_resend(self.protocol)
        self.pump()

    def _send_resend(self, proto):
        """Resend the waiting redelivery while the socket takes it. An entry acknowledged
        (or PUBREC'd) since ``resume`` is no longer the one in ``inflight``: skipped."""
        resend = self._resend
        inflight = self.inflight
        write = proto.transport.write
        while resend and not proto.writes_blocked:
            pid, entry = resend.popleft()
            if inflight.get(pid, _GONE) is not entry:
                continue
            if entry is PUBREL_PENDING:
                write(encode_pubrel(pid))
            else:
                message, qos, retain = entry
                topic = message.topic[self._mount:] if self._mount else message.topic
                write(encode_publish(topic, message.payload, qos, retain, True, pid))
        if not resend:
            self._resend = None

    def restore(self, inflight, queue, queued_bytes):
        """State read back at start (``Broker.restore``): ``inflight`` packet id ->
        entry in send order, ``queue`` of (message, qos, retain), their size."""
        if inflight:
            self.inflight = inflight
            self._next_id = max(inflight)
        if queue:
            self.queue = deque(queue)
            self.queued_bytes = queued_bytes

    # -- acknowledgements from the client ------------------------------------------------

    def puback(self, pid):
        """PUBACK: a QoS 1 delivery is complete. Unknown ids are ignored."""
        inflight = self.inflight
        if inflight:
            entry = inflight.get(pid, PUBREL_PENDING)
            if entry is not PUBREL_PENDING and entry[1] == 1:
                del inflight[pid]
                if self.queue:
                    self.pump()
                if not self.clean:
                    self.broker.persistence.changed(self)  # its cursor may advance

    def pubrec(self, pid):
        """PUBREC: QoS 2 step 2; answer PUBREL and remember it for redelivery."""
        inflight = self.inflight
        if inflight and pid in inflight:
            entry = inflight[pid]
            if entry is not PUBREL_PENDING and entry[1] != 2:
                return  # PUBREC for a QoS 1 message: ignore
            inflight[pid] = PUBREL_PENDING  # keeps its place in send order
            if not self.clean and entry is not PUBREL_PENDING:
                persistence = self.broker.persistence
                persistence.released(self, pid, entry[0].key)
                persistence.changed(self)
        # Also for an unknown id: answering PUBREL lets a confused client finish the flow.
        self.protocol.transport.write(encode_pubrel(pid))

    def pubcomp(self, pid):
        """PUBCOMP: a QoS 2 delivery is complete; frees the id and the window slot."""
        inflight = self.inflight
        if inflight and pid in inflight and inflight[pid] is PUBREL_PENDING:
            del inflight[pid]
            if self.queue:
                self.pump()
            if not self.clean:
                self.broker.persistence.changed(self)
