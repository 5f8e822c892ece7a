"""The hand-off channel between the master and one worker: both ends.

The master accepts a client's socket itself, reads its CONNECT, and hands the fd plus
every byte it read to a worker over a UNIX stream socketpair (SCM_RIGHTS). It keeps its
own fd open until the worker acks, then closes it with close(2), never shutdown(2): the
worker holds the same socket, and a shutdown would show its client an EOF. The same
socket carries control messages both ways (a closed conn id, subscription interest) and
cross-worker publishes (FORWARD frames); handoff_wire.py has the frames.

Forwarded publishes may be dropped, and must be bounded: each end registers itself as
its transport's producer, so it knows when the transport's buffer is full (64 KiB), and
``backlog`` counts the bytes written since then. The tree drops what it forwards past its
own bound on that (``mqttd.tree.crossing``, ``mqttd.tree.relay``); the other frames are
bounded by what they are (hand-offs by their window, acks by the hand-offs).

Fds ride on bytes of the stream, not on frames of their own: the worker queues every fd it
receives and pairs the oldest with each complete hand-off frame. That is sound because
the master queues each fd (Twisted's ``sendFileDescriptor``) just before writing its
frame, and Twisted's UNIX transport sends queued fds first, one on each next unsent byte,
before any other byte: an fd never arrives after its frame's last byte, only earlier.
Twisted makes one sendmsg per fd (and the worker one recvmsg per fd: Linux ends a stream
read after a message that carried fds); benchmarks/bench_handoff.py measured 16,000 to
24,000 hand-offs/s on 2 shared cores that way (about 20 us of master CPU each), 3x the
5,000 connects/s the master must carry, so there is no batched sendmsg of our own.
The master caps hand-offs in flight (sent, not acked) per channel, in count and bytes:
unbounded, a stalled worker would hold every client's fd in the kernel and the sender
would meet ETOOMANYREFS, which reads as a lost channel. Past the cap, hand-offs wait in
the master in a queue bounded in count and in bytes; past that, they fail at once and
the master closes the client, which reconnects.
"""
import collections
import os
import socket

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from .handoff_wire import (
    ACK, FORWARD, HANDOFF, HANDOFF_FROM, MAX_BODY, MESSAGE, Ack, ChannelProtocolError,
    Forward, FrameReader, Handoff, Message, decode, encode_ack, encode_forward,
    encode_handoff, encode_message, type_name,
)

__all__ = [
    "MAX_IN_FLIGHT", "MAX_IN_FLIGHT_BYTES", "MAX_QUEUED", "MAX_QUEUED_BYTES", "MAX_UNPAIRED_FDS",
    "ChannelLost", "ChannelProtocolError", "HandoffError",
    "HandoffQueueFull", "HandoffRefused", "MasterChannel", "WorkerChannel",
    "channel_socketpair", "open_channel",
]

log = Logger()

MAX_IN_FLIGHT = 256
"""Hand-offs sent and not yet acked, per channel (each holds a client fd in flight)."""
MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024
"""Their frames in bytes, per channel (a frame bigger than this goes alone)."""
MAX_QUEUED = 4096
"""Hand-offs waiting in the master behind a full window, per channel."""
MAX_QUEUED_BYTES = 16 * 1024 * 1024
"""Their frames (conn id + preread) in bytes, per channel."""
MAX_UNPAIRED_FDS = 1024
"""Fds a worker holds before their hand-off frames complete; the master sends at most
its window (256) ahead, so more means a broken master."""


class HandoffError(Exception):
    """A hand-off that did not happen: the master closes the client's socket."""


class ChannelLost(HandoffError):
    """The channel closed before the worker acked (the worker died, or a protocol error)."""


class HandoffRefused(HandoffError):
    """The worker could not adopt the socket (the client had gone, the fd was bad)."""


class HandoffQueueFull(HandoffError):
    """The channel's window and its queue are full: the worker is not keeping up."""


@implementer(interfaces.IPushProducer)
class _ChannelEnd(protocol.Protocol):
    """What both ends share: frames in, control messages and forwarded publishes both
    ways, how much the transport holds, and loss.

    ``on_forward(flags, slots, body)`` gets each FORWARD frame, ``on_drained()`` is
    called when the transport's buffer has emptied after it had filled up (``backlog``
    is 0 again), and FORWARD frames up to ``max_forward_body`` bytes are read.
    """

    _accepts = (MESSAGE, FORWARD)  # the frame types this end reads
    _end = "?"

    def __init__(self, on_message=None, on_forward=None, on_drained=None,
                 max_forward_body=MAX_BODY):
        self._reader = FrameReader(max_forward_body=max_forward_body)
        self._on_message = on_message
        self._on_forward = on_forward
        self._on_drained = on_drained
        self._closing = False  # nothing more is read or sent once it is closing
        self._error = None  # the ChannelProtocolError it was closed for
        self._lost = None  # the ChannelLost, once lost
        self._lost_waiters = []
        self._blocked = False  # the transport's buffer is full (it paused us)
        self._backlog = 0  # bytes written since it filled

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def _write(self, frame):
        if self._blocked:
            self._backlog += len(frame)
        self.transport.write(frame)

    @property
    def writable(self):
        return self.transport is not None and self._lost is None and not self._closing

    def send(self, kind, payload):
        """Send a control message. ValueError (nothing sent) if it cannot be framed;
        False if the channel is gone, True once written to the transport."""
        frame = encode_message(kind, payload)
        if not self.writable:
            return False
        self._write(frame)
        return True

    def forward(self, flags, slots, body):
        """Send a FORWARD frame (ValueError, nothing sent, if it cannot be framed); False
        if the channel is gone, True once written. Whether it should go at all is the
        caller's call, on ``backlog``."""
        frame = encode_forward(flags, slots, body)
        if not self.writable:
            return False
        self._write(frame)
        return True

    @property
    def backlog(self):
        """Bytes written since the transport's buffer filled up (it holds at most its
        64 KiB and one frame more than this); 0 while it keeps up."""
        return self._backlog

    # IPushProducer: the transport says when its buffer fills up and when it has emptied.

    def pauseProducing(self):
        self._blocked = True

    def resumeProducing(self):
        self._blocked = False
        self._backlog = 0
        if self._on_drained is not None and self.writable:
            try:
                self._on_drained()
            except Exception:
                log.failure("hand-off channel ({end}): the drained handler failed",
                            end=self._end)

    def stopProducing(self):
        pass

    def when_lost(self):
        """A Deferred that fires with the ChannelLost once the channel has closed."""
        if self._lost is not None:
            return defer.succeed(self._lost)
        waiter = defer.Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    def close(self):
        """Close the channel after what is written has gone. It reads no more: hand-offs
        not yet acked fail with ChannelLost, so to stop cleanly wait for them first."""
        self._closing = True
        if self.transport is not None:
            # A producer still registered would keep the connection open for ever.
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    @property
    def lost(self):
        return self._lost is not None

    def dataReceived(self, data):
        if self._closing:
            return
        for frame_type, body in self._reader.feed(data):
            if frame_type not in self._accepts:
                self._protocol_error(ChannelProtocolError(
                    f"unexpected {type_name(frame_type)} frame"))
                return
            try:
                value = decode(frame_type, body)
            except ChannelProtocolError as e:
                self._protocol_error(e)
                return
            self._handle(value)
            if self._closing:
                return
        if self._reader.error is not None:
            self._protocol_error(self._reader.error)

    def _handle(self, value):
        if isinstance(value, Message):
            self._deliver(value)
        elif isinstance(value, Forward):
            self._forwarded(value)

    def _forwarded(self, forward):
        if self._on_forward is None:
            log.warn("hand-off channel ({end}): forward frame with no handler, dropped",
                     end=self._end)
            return
        try:
            self._on_forward(forward.flags, forward.slots, forward.body)
        except Exception:
            log.failure("hand-off channel ({end}): the forward handler failed", end=self._end)

    def _deliver(self, message):
        if self._on_message is None:
            log.warn("hand-off channel ({end}): {kind} message with no handler, dropped",
                     end=self._end, kind=message.kind)
            return
        try:
            self._on_message(message.kind, message.payload)
        except Exception:
            log.failure("hand-off channel ({end}): the {kind} message handler failed",
                        end=self._end, kind=message.kind)

    def _protocol_error(self, error):
        log.error("hand-off channel ({end}): protocol error: {error}; closing the channel",
                  end=self._end, error=error)
        self._closing = True
        self._error = error
        self.transport.abortConnection()

    def connectionLost(self, reason):
        cause = self._error if self._error is not None else reason.value
        self._lost = ChannelLost(f"hand-off channel lost: {cause}")
        self._release(self._lost)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(self._lost)

    def _release(self, lost):
        """Let go of what this end holds for a channel that has closed."""


class MasterChannel(_ChannelEnd):
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

    def hand_off(self, fd, preread, conn_id, peer=None):
        """Send the socket ``fd`` and the bytes already read from it to the worker.
        ``peer`` (host, port) names the client when ``fd`` is the master's relay of it.

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
        frame = encode_handoff(conn_id, preread, peer)
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


@implementer(interfaces.IFileDescriptorReceiver)
class WorkerChannel(_ChannelEnd):
    """The worker's end: pair each received fd with its hand-off frame, ``adopt`` it,
    ack; control messages both ways.

    ``adopt(fd, preread, conn_id)`` owns ``fd`` (it must close it, whatever happens):
    returning acks the master that the socket is adopted, raising tells it it is not; a
    Deferred result acks when it fires. A relayed client's hand-off (TLS) calls
    ``adopt(fd, preread, conn_id, peer)`` with its (host, port). ``mqttd.edge.adopt.adopt_into`` is the usual
    body of it.
    """

    _accepts = (HANDOFF, HANDOFF_FROM, MESSAGE, FORWARD)
    _end = "worker"

    def __init__(self, adopt, on_message=None, max_unpaired_fds=MAX_UNPAIRED_FDS,
                 **forwarding):
        super().__init__(on_message, **forwarding)
        self._adopt = adopt
        self._max_unpaired_fds = max_unpaired_fds
        self._fds = collections.deque()

    def fileDescriptorReceived(self, descriptor):
        if self._closing or self._lost is not None:
            os.close(descriptor)
            return
        self._fds.append(descriptor)
        if len(self._fds) > self._max_unpaired_fds:
            self._protocol_error(ChannelProtocolError(
                f"{len(self._fds)} file descriptors arrived ahead of their hand-off "
                f"frames (at most {self._max_unpaired_fds})"))

    @property
    def unpaired_fds(self):
        return len(self._fds)

    def _handle(self, value):
        if not isinstance(value, Handoff):
            return super()._handle(value)
        if not self._fds:
            self._protocol_error(ChannelProtocolError(
                f"hand-off frame for conn id {value.conn_id} came without a file descriptor"))
            return
        fd = self._fds.popleft()
        extra = () if value.peer is None else (value.peer,)
        try:
            result = self._adopt(fd, value.preread, value.conn_id, *extra)
        except Exception as e:
            self._refused(e, value.conn_id)
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda _: self._ack(value.conn_id, True),
                                lambda failure: self._refused(failure.value, value.conn_id))
        else:
            self._ack(value.conn_id, True)

    def _refused(self, error, conn_id):
        log.debug("hand-off of conn {conn_id} not adopted: {error}",
                  conn_id=conn_id, error=error)
        self._ack(conn_id, False, f"{type(error).__name__}: {error}")

    def _ack(self, conn_id, adopted, reason=""):
        if self.writable:
            self._write(encode_ack(conn_id, adopted, reason))

    def _release(self, lost):
        while self._fds:
            os.close(self._fds.popleft())


class _Given(protocol.Factory):
    def __init__(self, channel):
        self._channel = channel

    def buildProtocol(self, addr):
        return self._channel


def open_channel(reactor, sock, channel):
    """Run ``channel`` (a MasterChannel or WorkerChannel) on ``sock``, one end of a
    connected UNIX stream socketpair (a socket object or an fd, e.g. the worker's
    inherited 3), which this closes: the reactor holds a dup of it."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    try:
        os.set_blocking(fd, False)
        reactor.adoptStreamConnection(fd, socket.AF_UNIX, _Given(channel))
    finally:
        if isinstance(sock, int):
            os.close(sock)
        else:
            sock.close()
    return channel


def channel_socketpair():
    """A (master end, worker end) UNIX stream socketpair for one worker's channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
