"""The master's end of a hand-off channel (``edge.handoff``): it sends each socket with
the bytes read from it, in a window, and reads acks and control messages.

The master caps hand-offs in flight (sent, not acked) per channel, in count and bytes:
unbounded, a stalled worker would hold every client's fd in the kernel and the sender
would meet ETOOMANYREFS, which reads as a lost channel. Past the cap, hand-offs wait in
the master in a queue bounded in count and in bytes; past that, they fail at once and
the master closes the client, which reconnects.
"""
import collections

from twisted.internet import defer

from .channel_end import ChannelEnd, ChannelLost, HandoffError
from .handoff_wire import ACK, FORWARD, MESSAGE, Ack, ChannelProtocolError, encode_handoff

__all__ = ["MAX_IN_FLIGHT", "MAX_IN_FLIGHT_BYTES", "MAX_QUEUED", "MAX_QUEUED_BYTES",
           "HandoffQueueFull", "HandoffRefused", "MasterChannel"]

MAX_IN_FLIGHT = 256
"""Hand-offs sent and not yet acked, per channel (each holds a client fd in flight)."""
MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024
"""Their frames in bytes, per channel (a frame bigger than this goes alone)."""
MAX_QUEUED = 4096
"""Hand-offs waiting in the master behind a full window, per channel."""
MAX_QUEUED_BYTES = 16 * 1024 * 1024
"""Their frames (conn id + preread) in bytes, per channel."""


class HandoffRefused(HandoffError):
    """The worker could not adopt the socket (the client had gone, the fd was bad)."""


class HandoffQueueFull(HandoffError):
    """The channel's window and its queue are full: the worker is not keeping up."""


class MasterChannel(ChannelEnd):
    """The master's end: ``hand_off`` sockets, read acks and control messages."""

    _accepts = (ACK, MESSAGE, FORWARD)
    _end = "master"

    def __init__(self, on_message=None, max_in_flight=MAX_IN_FLIGHT,
                 max_in_flight_bytes=MAX_IN_FLIGHT_BYTES, max_queued=MAX_QUEUED,
                 max_queued_bytes=MAX_QUEUED_BYTES, **forwarding):
        super().__init__(on_message, **forwarding)
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max_in_flight = max_in_flight
        self._max_in_flight_bytes = max_in_flight_bytes
        self._max_queued = max_queued
        self._max_queued_bytes = max_queued_bytes
        self._sent = {}  # conn id -> (Deferred, frame size), sent and not yet acked
        self._sent_bytes = 0
        self._waiting = collections.deque()  # (conn id, fd, frame, Deferred)
        self._waiting_ids = set()
        self._waiting_bytes = 0

    @property
    def in_flight(self):
        return len(self._sent)

    @property
    def in_flight_bytes(self):
        return self._sent_bytes

    @property
    def queued(self):
        return len(self._waiting)

    @property
    def queued_bytes(self):
        return self._waiting_bytes

    def hand_off(self, fd, preread, conn_id, peer=None, decided=None):
        """Send the socket ``fd`` and the bytes already read from it to the worker.
        ``peer`` (host, port) names the client when ``fd`` is the master's relay of it;
        ``decided`` (account or None, client id or None): the gate let it in.

        The Deferred fires with ``conn_id`` once the worker has adopted the socket (the
        caller then closes its own fd with close(2), never shutdown(2)); it fails with a
        HandoffError if it did not (the caller closes the socket: the client reconnects).
        Either way the caller keeps ``fd`` open until then: a closed fd whose number an
        accept reused would send the wrong client. Do not cancel it. A conn id already
        pending, or a preread over 4 MiB, raises ValueError. Past the window
        (``max_in_flight`` hand-offs or ``max_in_flight_bytes``) it waits in order in a
        queue of at most ``max_queued`` hand-offs and ``max_queued_bytes``; past that it
        fails at once with HandoffQueueFull.
        """
        frame = encode_handoff(conn_id, preread, peer, decided)
        if conn_id in self._sent or conn_id in self._waiting_ids:
            raise ValueError(f"conn id {conn_id} is already being handed off")
        if self._lost is not None or self._closing:
            return defer.fail(self._lost or ChannelLost("hand-off channel closing"))
        done = defer.Deferred()
        if self.transport is not None and not self._waiting and self._has_room(len(frame)):
            self._send(conn_id, fd, frame, done)
        elif (len(self._waiting) >= self._max_queued
              or self._waiting_bytes + len(frame) > self._max_queued_bytes):
            return defer.fail(HandoffQueueFull(
                f"conn {conn_id}: {len(self._sent)} hand-offs in flight and "
                f"{len(self._waiting)} ({self._waiting_bytes} bytes) queued"))
        else:
            self._waiting.append((conn_id, fd, frame, done))
            self._waiting_ids.add(conn_id)
            self._waiting_bytes += len(frame)
        return done

    def _has_room(self, size):
        if not self._sent:
            return True
        return (len(self._sent) < self._max_in_flight
                and self._sent_bytes + size <= self._max_in_flight_bytes)

    def _send(self, conn_id, fd, frame, done):
        self._sent[conn_id] = (done, len(frame))
        self._sent_bytes += len(frame)
        self.transport.sendFileDescriptor(fd)  # rides on the next unsent byte
        self._write(frame)

    def _pump(self):
        while (self._waiting and not self._closing
               and self._has_room(len(self._waiting[0][2]))):
            conn_id, fd, frame, done = self._waiting.popleft()
            self._waiting_ids.discard(conn_id)
            self._waiting_bytes -= len(frame)
            self._send(conn_id, fd, frame, done)

    def connectionMade(self):
        super().connectionMade()
        self._pump()

    def _handle(self, value):
        if not isinstance(value, Ack):
            return super()._handle(value)
        if value.conn_id not in self._sent:
            self._protocol_error(ChannelProtocolError(
                f"ack for conn id {value.conn_id}, which is not in flight"))
            return
        done, size = self._sent.pop(value.conn_id)
        self._sent_bytes -= size
        self._pump()
        if value.adopted:
            done.callback(value.conn_id)
        else:
            done.errback(HandoffRefused(
                f"conn {value.conn_id}: the worker could not adopt it: {value.reason}"))

    def _release(self, lost):
        pending = [done for done, _ in self._sent.values()]
        pending += [done for _, _, _, done in self._waiting]
        self._sent.clear()
        self._waiting.clear()
        self._waiting_ids.clear()
        self._sent_bytes = self._waiting_bytes = 0
        for done in pending:
            done.errback(ChannelLost(str(lost)))

