"""What a connection received that waits for its commit: acks in order, then routing.

The ingestion promise is kept here: every inbound PUBLISH is handed to the message sink
(``broker.submit``, see ``mqttd.store.sink``), and its PUBACK / PUBREC is written
only after the sink settled it as committed. Acks leave in receive order [MQTT-4.6.0-2]
even when the sink settles messages out of order: each connection has a FIFO of
entries (an ``InboundQueue``) released from its head, and the acks released together
share one write. A sink failure sends no ack; the connection closes (its owner does
that), so the device retransmits. What is committed after the close is routed though
never acknowledged: it is in the database.

Per client id, the queues of its successive connections form one FIFO in receive order
(``mqttd.broker.inbound_chain``: routing across reconnects, wills), and a QoS 2 message
a dropped connection is still storing is not stored again when the client retransmits
it (``mqttd.broker.qos2``).

Hot path: one ``InboundEntry`` per PUBLISH (``mqttd.broker.inbound_entry``: slotted; it
is also the sink's token), no Deferred, one bound method as ``notify`` so a sink can
settle a connection's messages in one call.
"""
from collections import deque

from mqttd.broker.inbound_entry import InboundEntry, make_entry
from mqttd.broker.qos2 import hand_over, is_waiting, release_waiters, waiting_for
from mqttd.codec import encode_puback, encode_pubcomp, encode_pubrec
from mqttd.store.sink import StoreRejected

__all__ = ["InboundQueue"]

_ACKS_END = object()  # in place of an ack: no ack is written from here on


def _stopping(failure):
    error = failure.value
    return isinstance(error, StoreRejected) and error.reason == "stopping"


class InboundQueue:
    """One connection's inbound FIFO, from its first PUBLISH until all is routed.

    ``owner`` is the connection: ``owner.store_failed(failure)`` or, for a topic
    ``topics`` (a ClientTopics) refused, ``owner.publish_denied(topic)`` (both close
    without ack) while it is open, and ``owner.window_open()`` when the FIFO has gone
    below ``max_inflight`` again after ``publish`` said it was full. Acks: ``transport``.
    Once ``close`` is called nothing is written; what settles later is only routed.
    """

    __slots__ = ("_queues", "_broker", "_owner", "_transport", "_client_id", "_username",
                 "_session", "_topics", "_entries", "_open", "_full", "_notify",
                 "_after_close", "_route_after", "_acking", "_trace", "_echo_wait")

    def __init__(self, queues, owner, transport, client_id, username, session, open=True,
                 topics=None, trace=None):
        self._queues = queues
        self._broker = queues.broker
        self._owner = owner
        self._transport = transport
        self._client_id = client_id
        self._username = username
        self._session = session
        self._topics = topics
        self._entries = None  # deque of InboundEntry, created on first use
        self._open = open
        self._full = False
        # One bound method for every submit: a sink settles consecutive messages with
        # the same ``notify`` object (identity) in one call.
        self._notify = self.settle
        self._after_close = None  # the persistent session, once closed (QoS 2 hand-over)
        # Once closed: the queue at whose end routing after ours goes (see _route).
        self._route_after = None
        self._acking = True  # False past a message the stopping sink did not take
        # The connection's ClientTrace (mqttd.manage.tracer), or None: trace off. Its
        # publish and ack events are built only while it is ``verbose``.
        self._trace = trace
        # The ack at the FIFO's head waiting for the master's echo of its retained set
        # (the tree's ``Crossing.hold_ack``), or None.
        self._echo_wait = None

    def __len__(self):
        return len(self._entries) if self._entries else 0

    @property
    def client_id(self):
        return self._client_id

    def __repr__(self):
        entries = list(self._entries) if self._entries else []
        return f"<InboundQueue {self._client_id!r} open={self._open} {entries}>"

    # -- from the connection -------------------------------------------------------------

    def publish(self, packet, received_at):
        """Queue a PUBLISH and submit it; True if the FIFO is now full (stop reading).

        ``received_at`` is the time of the read that carried it (one clock call per
        read, not per message). A topic ``topics`` refuses is neither counted nor kept."""
        trace = self._trace
        if trace is not None:
            trace.messages_in += 1
        topic = packet.topic
        if "$" in topic or self._topics.policed:  # (a plain client: two cheap tests)
            topic = self._topics.publish(topic)
            if topic is None:
                self._owner.publish_denied(packet.topic)
                return False
        broker = self._broker
        broker.metrics.mqtt_publish_received += 1
        qos = packet.qos
        entries = self._entries
        if entries is None:
            entries = self._entries = deque()
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
                return self._duplicate(ack, qos2_id)
            ids.add(qos2_id)
        else:
            ack = None
        message = broker.make_message(self._client_id, self._username, topic,
                                      packet.payload, qos, packet.retain, received_at)
        if trace is not None and trace.verbose:
            trace.published(packet, message)
        # Queued BEFORE submitting: the sink may settle it at once (the in-memory store
        # always does; a refusal may), and close() must see it to release a QoS 2 id.
        entry = InboundEntry()  # make_entry() inline
        entry.ack = ack
        entry.message = message
        entry.settled = False
        entry.qos2_id = qos2_id
        entries.append(entry)
        broker.submit(message, self._notify, entry)
        if len(entries) >= broker.max_inflight and self._open:  # (a refusal may close)
            self._full = True
            return True
        return False

    def _duplicate(self, ack, qos2_id):
        """A retransmission of a QoS 2 message already stored (or being stored): PUBREC
        again, after the original's, without storing or routing it twice."""
        self._broker.metrics.mqtt_qos2_retransmits += 1
        original = waiting_for(self._session, qos2_id)
        entries = self._entries
        if original is not None:
            # The original is still being stored by a dropped connection: this PUBREC
            # waits for that commit, and fails with it (waiting_settled).
            entry = make_entry(ack, None, False, 0)
            entries.append(entry)
            original.waiters.append((self, entry))
            if len(entries) >= self._broker.max_inflight:
                self._full = True
                return True
            return False
        if entries:
            entries.append(make_entry(ack, None, True, 0))
        else:
            self._transport.write(ack)
        return False

    def pubrel(self, packet_id):
        """PUBREL: free the id (QoS 2 step 3) and answer PUBCOMP, after queued acks."""
        session = self._session
        ids = session.inbound_qos2
        if ids and not is_waiting(session, packet_id):
            # (A PUBREL before its PUBREC, for a copy still being stored by a dropped
            # connection, must not free the id: a new message with it would be stored
            # and the waiting retransmission never answered.)
            ids.discard(packet_id)
        pubcomp = encode_pubcomp(packet_id)  # also for unknown ids
        if self._entries:
            # After the acks already queued: one may be a retransmit's PUBREC for this
            # id, and arriving after the PUBCOMP it would acknowledge the id's next,
            # uncommitted message.
            self._entries.append(make_entry(pubcomp, None, True, 0))
        else:
            self._transport.write(pubcomp)

    def close(self):
        """The connection closed: no more acks; hand QoS 2 ids over; route what is
        settled; what is not waits for the sink (``_release_closed``)."""
        self._open = False
        waiting = self._echo_wait
        if waiting is not None:  # no ack is written now: what follows may be routed
            self._echo_wait = None
            waiting.settled = True
        forget = self._broker.forget
        if forget is not None:
            forget(self._notify)  # it will not submit again (the webhook's linger)
        entries = self._entries
        session = self._session
        queues = self._queues
        if entries:
            if hand_over(session, entries):  # persistent: QoS 2 ids wait for their copy
                self._after_close = session
            self._route_after = queues.anchor(self._client_id)
            self._release_closed()
        if self._entries:
            queues.hand_on(self)  # the next connection routes after us
        else:
            self._let_go()

    # -- from the sink -----------------------------------------------------------------

    def settle(self, entries, failure):
        """The sink's ``notify``: ``entries`` (of this FIFO) are committed, or failed.

        One call may settle many entries (a sink settles a batch per connection at
        once), so their acks go out in one write from ``_release``. Entries that settle
        after the connection closed get no ack; what was committed is still routed.
        """
        broker = self._broker
        if failure is None:
            broker.metrics.mqtt_publish_stored += len(entries)
            for entry in entries:
                entry.settled = True
        else:
            for entry in entries:
                entry.message = None  # not stored: nothing of it to route, ever
                entry.settled = True
            session = self._after_close
            if session is not None and session.qos2_pending:
                release_waiters(session, entries, failure)  # successes: _release_closed
            broker.metrics.mqtt_publish_not_stored += len(entries)
            if _stopping(failure):
                # The broker is stopping: the connection stays for the acks of what was
                # committed before these; none after them (acks keep receive order
                # [MQTT-4.6.0-2]); the stop closes it, and the client sends them again.
                entries[0].ack = _ACKS_END
                for entry in entries[1:]:
                    entry.ack = None
            elif self._open:
                self._owner.store_failed(failure)  # closes: close() is called
        self._release_settled()

    def waiting_settled(self, entry, failure):
        """The copy a dropped connection was storing is routed: ``entry``, this
        connection's PUBREC for its retransmission, may go (after it: what this
        connection received later is routed after it too). Or that copy failed: this
        connection closes unacknowledged, as for its own messages, and the client sends
        it again (then stored: the id is free). Counted once, by the original."""
        entry.settled = True
        if failure is not None and self._open:
            self._owner.store_failed(failure)
        self._release_settled()

    def _release_settled(self):
        """Release what the FIFO's head has settled: acks and routing while open,
        routing alone once closed."""
        if self._open:
            if self._entries[0].settled:
                self._release()
        elif self._entries:
            self._release_closed()

    def _release(self):
        """Write acks and route messages from the head of the FIFO while settled.

        The acks released together leave in one write, in order, before the messages are
        routed (a connection subscribed to its own topic sees its PUBACKs first, then the
        deliveries; MQTT orders neither against the other).
        """
        entries = self._entries
        trace = self._trace
        if trace is not None and trace.verbose:
            trace.acked(entries, self._broker.clock.seconds())
        popleft = entries.popleft
        acks = []
        messages = []
        acking = self._acking
        while entries and entries[0].settled:
            entry = popleft()
            ack = entry.ack
            message = entry.message
            if message is not None:
                messages.append(message)
                if message.retain and acking and ack is not None and ack is not _ACKS_END \
                        and self._held_for_echo(message, ack):
                    break
            if ack is not None and acking:
                if ack is _ACKS_END:
                    acking = self._acking = False
                else:
                    acks.append(ack)
        if acks:
            self._transport.write(acks[0] if len(acks) == 1 else b"".join(acks))
        if messages:
            self._route(messages)
        if self._full and len(entries) < self._broker.max_inflight:
            self._full = False
            self._owner.window_open()

    def _held_for_echo(self, message, ack):
        """In the tree, a retained set's ack waits for the master's echo of it: until
        then a client that connects to another worker could still read the value it
        replaced. Its ack, alone, goes back at the FIFO's head, unsettled (what follows
        waits behind it: acks keep receive order). False on one worker."""
        elsewhere = self._broker.elsewhere
        if elsewhere is None:
            return False
        waiting = make_entry(ack, None, False, 0)
        if not elsewhere.hold_ack(message, self._echo_came, waiting):
            return False
        self._entries.appendleft(waiting)
        self._echo_wait = waiting
        return True

    def _echo_came(self, waiting):
        if self._echo_wait is waiting:
            self._echo_wait = None
            waiting.settled = True
            self._release_settled()

    def _release_closed(self):
        """After the close: route what the sink committed, in receive order, no acks.

        A message in the database must also reach its subscribers and the retained
        store, or ``mosquitto_pub -r`` (PUBLISH, then DISCONNECT before the commit) would
        be stored and never retained, and a persistent client that publishes and never
        comes back would have its data stored and never delivered. A persistent client
        that does come back retransmits its unacknowledged QoS 1/2 messages
        [MQTT-4.4.0-1]: a QoS 1 one is then stored and routed again (at least once, as
        QoS 1 allows); a QoS 2 one is not (exactly once): its id stays taken while this
        connection's copy is being stored, and the retransmission's PUBREC waits for
        that commit (``close``, ``_duplicate``). The will is in this FIFO too, after
        them (``InboundQueues.publish_will``).
        """
        entries = self._entries
        session = self._after_close
        while entries and entries[0].settled:
            entry = entries.popleft()
            message = entry.message
            if message is not None:  # None: not stored, or an ack alone
                self._route((message,))
                if entry.qos2_id and session is not None and session.qos2_pending:
                    # Routed: retransmissions waiting for it may go (after it, so what
                    # their connection received later is routed after it too).
                    release_waiters(session, (entry,), None)
        if not entries:
            self._entries = None
            if self._queues.handed_over(self, self._route_after):
                # Everything routed: drop the link, or a client that drops and
                # reconnects again and again would keep every old connection alive.
                self._route_after = None
            self._let_go()

    def _let_go(self):
        """Closed and drained: drop the links back to the connection (owner, transport,
        the bound ``notify``), so the connection and its queue are freed by reference
        counting, not left as a cycle for the collector (one per closed connection)."""
        self._owner = None
        self._transport = None
        self._notify = None

    def _route(self, messages):
        """Route ``messages`` (in receive order) after whatever this client's earlier
        connections received and still have to route.

        Across a drop and a reconnect the old connection's messages can commit after
        the new one's (a batch retried after a 503): routed as they commit, an older
        message on a topic would overtake a newer one [MQTT-4.6.0-6], and a retained
        value come back stale. So while an earlier connection has messages to route,
        ours are queued at the end of its FIFO, routed when it gets there.
        """
        if self._open:
            queues = self._queues
            before = queues.anchor(self._client_id) if queues.unrouted else None
        else:
            before = self._route_after
            if before is not None:
                before = self._route_after = before.anchor()
        if before is not None:
            before.append_routed(messages)
            return
        route = self._broker.route
        for message in messages:
            route(message)

    # -- from the other queues of the same client id -------------------------------------

    def anchor(self):
        """The queue at whose end routing after this one queues: this one while it has
        messages to route, else whatever it routes after (a closed connection hands its
        messages on to an earlier one's FIFO); None once all is routed."""
        queue = self
        while queue is not None and not len(queue):
            queue = queue.route_after
        return queue

    @property
    def route_after(self):
        """Once closed: the queue at whose end routing after this one goes (or None)."""
        return self._route_after

    def append_routed(self, messages):
        """Messages of a later connection, settled: routed when this FIFO gets there."""
        self._entries.extend(make_entry(None, message, True, 0) for message in messages)

    def append_will(self, entry):
        entries = self._entries
        if entries is None:
            entries = self._entries = deque()
        entries.append(entry)
