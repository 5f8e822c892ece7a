"""What both ends of a hand-off channel share (``edge.handoff``): frames in, control
messages and forwarded publishes both ways, how much the transport holds, and loss;
and how a channel is opened on its socketpair.

Forwarded publishes may be dropped, and must be bounded: each end registers itself as
its transport's producer, so it knows when the transport's buffer is full (64 KiB), and
``backlog`` counts the bytes written since then. The tree drops what it forwards past its
own bound on that (``mqttd.tree.crossing``, ``mqttd.tree.relay``); the other frames are
bounded by what they are (hand-offs by their window, acks by the hand-offs).
"""
import os
import socket

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from .handoff_wire import (
    FORWARD, MAX_BODY, MESSAGE, ChannelProtocolError, Forward, FrameReader, Message, decode,
    encode_forward, encode_message, type_name,
)

__all__ = ["ChannelEnd", "ChannelLost", "HandoffError", "channel_socketpair", "open_channel"]

# The namespace the lines had before the channel was split by end: operators filter by it.
log = Logger(namespace="mqttd.edge.handoff")


class HandoffError(Exception):
    """A hand-off that did not happen: the master closes the client's socket."""


class ChannelLost(HandoffError):
    """The channel closed before the worker acked (the worker died, or a protocol error)."""


@implementer(interfaces.IPushProducer)
class ChannelEnd(protocol.Protocol):
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
