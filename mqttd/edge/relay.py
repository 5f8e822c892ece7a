"""Two connections joined: every byte read on one is written to the other, both ways.

The master terminates TLS and relays the plaintext between the client's TLS connection
and its end of the socketpair whose other end the worker holds (``edge.tls_connect``).
Memory stays bounded per connection: each side's transport is the other's streaming
producer, so a side whose write buffer fills (a client that reads slowly, a worker that
paused its reads) stops the reads on the other side until it drains, as a Twisted
transport pauses its producer. A relay holds at most the two transports' buffers (about
one buffer size and one read each way), never a queue of its own.

When one side goes, the relay closes the other after what it has to write: loseConnection
(TLS: close_notify), then abort if it is not gone within ``close_grace`` (a peer that never
reads its last bytes or never answers close_notify must not keep its socket). A half-close
is a close: neither MQTT nor the broker has a use for one.

Its owner hears of each side's end once, ``when_lost(side, reason)``: ``reason`` is the
side's connectionLost's Failure, to judge whether the relay broke (``edge.tls_failures``),
or None when the relay aborted the side because it had not closed within the grace.
"""
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

__all__ = ["CLOSE_GRACE", "Relay"]

CLOSE_GRACE = 10.0
"""Seconds the second side may take to close once the first has gone (the broker's
own close grace, mqttd.broker.protocol)."""


@implementer(IPushProducer)
class _Throttle:
    """What one side's transport, as the consumer, tells the other side's: read or not.

    Not the other transport itself: a transport that loses its connection calls
    ``stopProducing`` on its producer, which on a transport closes at once, before the
    relay has flushed what that side still had to write. Closing is the relay's job.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport):
        self._transport = transport

    def pauseProducing(self):
        self._transport.pauseProducing()

    def resumeProducing(self):
        self._transport.resumeProducing()

    def stopProducing(self):
        pass


class _Side(Protocol):
    """One side of a relay: the protocol of one of the two transports."""

    def __init__(self, relay):
        self._relay = relay
        self.other = None
        self.open = False
        self.gone = False
        self.aborted = False  # by the relay, past the close grace

    def connectionMade(self):
        self.open = True
        self._relay._joined(self)

    def dataReceived(self, data):
        other = self.other
        if other.open:
            other.transport.write(data)

    def connectionLost(self, reason=None):
        self.open = False
        self.gone = True
        self._relay._lost(self, reason)


class Relay:
    """``first`` and ``second``: the protocols of the two connections to join.

    Connect each to its transport (``makeConnection``, or as the protocol of a factory);
    bytes flow once both are connected, and a side that sends before that gets its bytes
    to the other side only if that one is already connected (the master connects the
    worker's side first). ``when_done`` is called once, when both sides are gone;
    ``when_lost(side, reason)`` as the module says.
    """

    def __init__(self, clock, close_grace=CLOSE_GRACE, when_done=None, when_lost=None):
        self._clock = clock
        self._close_grace = close_grace
        self._when_done = when_done
        self._when_lost = when_lost
        self._timer = None
        self._throttled = False  # each transport has the other's throttle as producer
        self.first = _Side(self)
        self.second = _Side(self)
        self.first.other, self.second.other = self.second, self.first

    @property
    def done(self):
        return self.first.gone and self.second.gone

    def _joined(self, side):
        other = side.other
        if other.gone:
            self._close(side)  # the other side came and went already
        elif other.open:
            side.transport.registerProducer(_Throttle(other.transport), True)
            other.transport.registerProducer(_Throttle(side.transport), True)
            self._throttled = True

    def _lost(self, side, reason):
        if self._when_lost is not None and not side.aborted:
            self._when_lost(side, reason)
        other = side.other
        if other.gone:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            if self._when_done is not None:
                when_done, self._when_done = self._when_done, None
                when_done()
        elif other.open:
            self._close(other)

    def _close(self, side):
        """Close ``side`` after what it has to write, or abort it after the grace."""
        transport = side.transport
        if self._throttled:
            transport.unregisterProducer()  # one with a producer never finishes closing
        transport.resumeProducing()  # it may be paused for the side that is gone: read its close
        transport.loseConnection()
        self._timer = self._clock.callLater(self._close_grace, self._overdue, side)

    def _overdue(self, side):
        """``side`` has not closed within the grace: abort it, and say so."""
        self._timer = None
        side.aborted = True
        if self._when_lost is not None:
            self._when_lost(side, None)
        side.transport.abortConnection()
