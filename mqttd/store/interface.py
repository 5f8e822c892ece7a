"""The storage seam between the broker and durability.

The broker hands every inbound PUBLISH to an IMessageStore and acknowledges a QoS 1/2
message (PUBACK / PUBREC) only when the Deferred returned by ``store`` fires with a
result. If it fails, the message was NOT stored: the broker sends no acknowledgement and
closes the connection so the device retransmits. The durable ingest tier (webhook +
SQLite) implements this same interface; the in-memory store below is the broker-core
default and fires at once.
"""
import attrs
from zope.interface import Interface


@attrs.frozen
class Message:
    """One inbound application message, as it will be stored.

    ``key`` is unique per received PUBLISH and stays the same on every retry, so a retried
    write never duplicates a row.
    """

    key: str
    client_id: str
    username: str | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float


class StoreRejected(Exception):
    """The store did not take the message (it is not stored); an expected outcome.

    ``reason`` is a short stable key (``ack timeout``, ``overload``, ``refused``, ...)
    used in counters and logs. Anything else a store's Deferred fails with is a bug.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class IMessageStore(Interface):
    def store(message):
        """Persist ``message``; return a Deferred that fires once it is committed."""
