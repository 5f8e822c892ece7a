"""One place in a connection's inbound FIFO (``mqttd.broker.inbound.InboundQueue``).

A value of its own because more than the queue holds it: the queue fills and releases
it, the sink gets it back as the token of its message (``broker.submit``), a client's
will is one (``mqttd.broker.inbound_chain``), and the QoS 2 hand-over keeps it across a
dropped connection (``mqttd.broker.qos2``). Slotted, with no ``__init__``: one is made
per PUBLISH, on the hot path.
"""

__all__ = ["InboundEntry", "make_entry"]


class InboundEntry:
    """One place in a connection's FIFO: the ack to write and the message to route once
    settled. ``message`` None: an ack alone (a retransmission's, a PUBCOMP), or a message
    that failed (nothing to route, ever). ``ack`` None: QoS 0, a will, or a message
    queued here to be routed after this connection's own. ``qos2_id`` is the QoS 2
    packet id the client is waiting on, or 0."""

    __slots__ = ("ack", "message", "settled", "qos2_id")

    # No __init__: ``InboundQueue.publish`` fills a bare ``InboundEntry()`` in place (a
    # construction with no Python frame, once per PUBLISH); elsewhere ``make_entry()``.

    def __repr__(self):
        key = self.message.key if self.message is not None else None
        return (f"<InboundEntry ack={self.ack!r} message={key} settled={self.settled} "
                f"qos2_id={self.qos2_id}>")


def make_entry(ack, message, settled, qos2_id):
    entry = InboundEntry()
    entry.ack = ack
    entry.message = message
    entry.settled = settled
    entry.qos2_id = qos2_id
    return entry
