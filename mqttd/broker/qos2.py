"""QoS 2 exactly once across a drop: a retransmission waits for the copy being stored.

A persistent client whose connection dropped while a QoS 2 message was being stored
sends it again on its next connection (DUP=1, same packet id [MQTT-4.4.0-1]). Stored
again, it would be a second row and a second delivery. So at the close the id stays
taken (``hand_over``) and the retransmission's PUBREC waits for the first copy: it goes
once that copy is routed, or, if the copy failed, its id is freed and the waiting
connection closes unacknowledged, so the client sends it again (``release_waiters``).

The records live in ``Session.qos2_pending`` (packet id -> ``Qos2Wait``), so they go
with the session when a clean connect discards it; only this module and
``mqttd.broker.inbound`` use them.
"""

__all__ = ["Qos2Wait", "hand_over", "is_waiting", "release_waiters", "waiting_for"]


class Qos2Wait:
    """A QoS 2 message a dropped connection of a persistent session is still storing
    (``original``, an entry of that connection's queue), and the retransmissions whose
    PUBREC waits for it: ``waiters`` is a list of (queue, entry holding the PUBREC).
    Kept in ``Session.qos2_pending`` (packet id -> Qos2Wait)."""

    __slots__ = ("original", "waiters")

    def __init__(self, original):
        self.original = original
        self.waiters = []


def hand_over(session, entries):
    """A connection of ``session`` closed with ``entries`` (InboundEntry) not yet
    routed. True if the session is persistent: its QoS 2 messages being stored keep
    their ids, and a retransmission will wait for them (``waiting_for``)."""
    persistent = not session.clean
    ids = session.inbound_qos2
    for entry in entries:
        qos2_id = entry.qos2_id
        if not qos2_id:
            continue
        if persistent and entry.message is not None:
            # Being stored, or stored and waiting for an earlier message to be routed
            # first: its id stays taken, and a retransmission on a later connection
            # waits for it to be routed instead of being stored again.
            waiting = session.qos2_pending
            if waiting is None:
                waiting = session.qos2_pending = {}
            waiting[qos2_id] = Qos2Wait(entry)
        elif ids:
            # Not stored (failed), or a clean session's (it ends here): a
            # retransmission is stored, not answered as a duplicate.
            ids.discard(qos2_id)
    return persistent


def waiting_for(session, qos2_id):
    """The Qos2Wait of ``qos2_id`` if a dropped connection is still storing it."""
    waiting = session.qos2_pending
    return waiting.get(qos2_id) if waiting else None


def is_waiting(session, qos2_id):
    waiting = session.qos2_pending
    return bool(waiting) and qos2_id in waiting


def release_waiters(session, entries, failure):
    """``entries`` of a dropped connection were routed (``failure`` None) or failed:
    retransmissions waiting for them get their PUBREC, or, if the copy failed, its id is
    freed and they fail too."""
    waiting = session.qos2_pending
    for entry in entries:
        qos2_id = entry.qos2_id
        record = waiting.get(qos2_id) if qos2_id else None
        if record is None or record.original is not entry:
            continue
        del waiting[qos2_id]
        if failure is not None and session.inbound_qos2:
            session.inbound_qos2.discard(qos2_id)
        for queue, ack in record.waiters:
            queue.waiting_settled(ack, failure)
