"""Why one connection is not reading its socket: ReadPause.

A connection stops reading for reasons that come and go independently: its CONNECT waits
for authentication, its inbound FIFO holds ``max_inflight`` messages, its client reads
slower than we write, or the message sink is full (``mqttd.broker.pressure``). Each
reason is a bit: the transport is paused at the first and resumed only when the last one
is gone, so one reason clearing never undoes another.

Keepalive and the packet deadline ask whose silence it is: while we are the ones not
reading, the client's packets (its PINGREQs too) wait unread in the socket, and closing
it for that silence would be wrong.
"""

__all__ = ["ReadPause", "AUTH", "INFLIGHT", "WRITES", "PRESSURE", "STOPPING", "SUBSCRIBE"]

AUTH = 1  # the CONNECT waits for its admission
INFLIGHT = 2  # the inbound FIFO is full
WRITES = 4  # the client reads slower than we write to it
PRESSURE = 8  # the message sink is full
STOPPING = 16  # the broker is stopping: what it took is being committed and acknowledged
SUBSCRIBE = 32  # a persistent session's SUBSCRIBE is being saved
_OURS = INFLIGHT | PRESSURE | STOPPING | SUBSCRIBE  # keepalive does not count these


class ReadPause:
    """The reasons that keep ``transport`` paused; slotted: one per connection."""

    __slots__ = ("_transport", "_reasons", "_closed")

    def __init__(self, transport):
        self._transport = transport
        self._reasons = 0
        self._closed = False

    def __contains__(self, reason):
        return bool(self._reasons & reason)

    def pause(self, reason):
        if not self._reasons:
            self._transport.pauseProducing()
        self._reasons |= reason

    def resume(self, reason):
        """``reason`` is gone: read again if it was the last one (and not closed)."""
        if self._reasons & reason:
            self._reasons &= ~reason
            if not self._reasons and not self._closed:
                self._transport.resumeProducing()

    def silence_is_ours(self):
        """We stopped reading because of our own state (a full window or sink): keepalive
        waits. A socket the client does not drain is its own silence (see
        ``MQTTServerProtocol.resumeProducing``), so a client that stopped reading is
        still closed."""
        return bool(self._reasons & _OURS)

    def held_by_us(self):
        """Any reason but the client's own full socket: a packet it could not finish
        sending is then not its fault."""
        return bool(self._reasons & ~WRITES)

    def closed(self):
        """The connection is closing: a reason that goes away no longer resumes it."""
        self._closed = True

    def read_to_close(self):
        """Read again whatever the reasons: a transport that is never read cannot finish
        closing. Over TLS loseConnection waits for the client's close_notify (or its
        EOF), so a connection closed with reading paused (a full window, a takeover, a
        store failure) was never released. Input after the close is ignored."""
        if self._reasons:
            self._reasons = 0
            self._transport.resumeProducing()
