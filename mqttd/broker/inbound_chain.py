"""One client id's inbound queues across reconnects: routing order and wills.

Across a drop and a reconnect the old connection's messages can commit after the new
one's (a batch retried after a 503): routed as they commit, an older message on a topic
would overtake a newer one [MQTT-4.6.0-6], and a retained value come back stale. So per
client id the ``InboundQueue`` of each connection routes after its predecessors: while
an earlier connection has messages to route, a later one's settled messages are queued
at the end of that earlier FIFO (``InboundQueue.anchor``) and routed when it gets there.
``InboundQueues`` knows, per client id, the latest closed queue still routing.

The will is its connection's last message: stored, then routed after everything that
connection received, into the FIFO where the client's routing ends.
"""
from twisted.logger import Logger

from mqttd.broker.inbound import InboundQueue
from mqttd.broker.inbound_entry import make_entry

__all__ = ["InboundQueues"]

log = Logger()


class InboundQueues:
    """The inbound queues of one broker, by client id: which connection's routing the
    next one of a client id goes after.

    ``unrouted`` maps a client id to its latest closed queue with messages still to
    route (read it, change it only through these methods). The open queue of that
    client id routes after it (``anchor``); a queue that drained hands the role on to
    the queue it routed after (``handed_over``).
    """

    __slots__ = ("broker", "unrouted")

    def __init__(self, broker):
        self.broker = broker
        self.unrouted = {}
        if broker.forget is not None:
            broker.forget(_settle_wills)  # wills stand for no connection: never wait for them

    def __len__(self):
        return len(self.unrouted)

    def __repr__(self):
        return f"<InboundQueues unrouted={self.unrouted!r}>"

    def open(self, owner, transport, client_id, username, session, topics, trace=None):
        """The queue of a connection that was accepted as ``client_id``, whose
        publishes ``topics`` (a ClientTopics) mounts and judges (``trace``: its
        ClientTrace, or None)."""
        return InboundQueue(self, owner, transport, client_id, username, session,
                            topics=topics, trace=trace)

    def anchor(self, client_id):
        """The queue at whose end what ``client_id``'s open connection routes goes
        (None: route at once)."""
        unrouted = self.unrouted
        if not unrouted:
            return None
        latest = unrouted.get(client_id)
        return latest.anchor() if latest is not None else None

    def hand_on(self, queue):
        """``queue`` closed with messages still to route: the next connection of its
        client id routes after it."""
        self.unrouted[queue.client_id] = queue

    def handed_over(self, queue, route_after):
        """``queue`` drained; True when all of its client id is routed. If it was the
        latest to route, the next connection routes after what it routed after."""
        client_id = queue.client_id
        unrouted = self.unrouted
        if unrouted.get(client_id) is not queue:
            return False
        before = route_after.anchor() if route_after is not None else None
        if before is None:
            del unrouted[client_id]
            return True
        unrouted[client_id] = before
        return False

    def publish_will(self, queue, client_id, username, will, received_at):
        """Publish a will like its connection's last message: stored, then routed in
        the client's receive order.

        The platform ingests wills too (a device's "offline" notice is data), so it is
        submitted like a PUBLISH, into the FIFO where the client's routing ends: its
        connection's ``queue`` (None if it never published), or, once that is empty,
        the earlier connection's it routes after. It is routed after everything
        received before the drop, even when its own commit lands first (a retained
        "online" still being stored must not overwrite the will's "offline"), and a
        next connection of the client routes after it.
        """
        broker = self.broker
        metrics = broker.metrics
        metrics.mqtt_wills_published += 1
        metrics.mqtt_publish_received += 1
        message = broker.make_message(client_id, username, will.topic, will.payload,
                                      will.qos, will.retain, received_at)
        # ``queue`` (closed by now) is in ``unrouted`` if it has anything to route.
        target = self.anchor(client_id)
        if target is None:
            target = queue if queue is not None else InboundQueue(
                self, None, None, client_id, username, None, open=False)
        entry = make_entry(None, message, False, 0)
        target.append_will(entry)
        self.unrouted[client_id] = target
        broker.submit(message, _settle_wills, (target, entry))


def _settle_wills(tokens, failure):
    """``notify`` of wills; ``tokens`` are (queue that holds it, entry).

    One function for all wills, forgotten by the sink at once (``InboundQueues``): a
    sink's batching must not wait for a will's submitter to publish again (it is no
    connection). A will the sink failed
    is logged here: nobody resends it.
    """
    for target, entry in tokens:
        if failure is not None:
            log.warn("will of {client_id} not stored, not published: {reason}",
                     client_id=entry.message.client_id, reason=failure.getErrorMessage())
        try:
            target.settle([entry], failure)
        except Exception:
            # One call carries the wills of many clients: one that breaks must not
            # leave the others (and all routing behind them) unsettled.
            log.failure("settling the will of {client_id} failed",
                        client_id=target.client_id)
