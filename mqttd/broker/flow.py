"""The connection's states and its flow control: when it reads again.

``MQTTServerProtocol`` (``mqttd.broker.protocol``) takes these from ``FlowControl``, a
slotted mixin holding no state of its own: the calls that resume reading (the sink
drained, the inbound window opened, the client's socket drained), the pauses when the
client's socket is full (IPushProducer) and when the broker stops. Why it is not
reading is the connection's ``ReadPause`` (``mqttd.broker.reading``); apart, so that
the protocol keeps to bytes, packets, timers and closing.
"""
from mqttd.broker.reading import INFLIGHT, PRESSURE, STOPPING, WRITES

__all__ = ["FlowControl"]

# Connection states, in the order a connection goes through them.
_AWAIT_CONNECT = 0
_AUTHENTICATING = 1
_CONNECTED = 2
_CLOSED = 3
_REFUSED = 4  # over max_connections: never counted, nothing to clean up


class FlowControl:
    """The flow-control half of a connection (reads ``_state``, ``_reading``,
    ``_liveness``, ``_backlog``, ``_member`` and ``writes_blocked`` of the protocol,
    and calls its ``_process``)."""

    __slots__ = ()

    def stop_reading(self):
        """The broker is stopping: read nothing more, so that what was read can be
        committed and acknowledged before the connection closes."""
        if self._state < _CLOSED:
            self._reading.pause(STOPPING)

    def sink_drained(self):
        """The sink that paused us has drained (``mqttd.broker.pressure``): read again,
        starting with what the read that paused us still held."""
        if PRESSURE not in self._reading or self._state != _CONNECTED:
            return
        self._liveness.saw()  # keepalive counts from when we read again
        backlog, self._backlog = self._backlog, None
        self._reading.resume(PRESSURE)
        if backlog:
            self._process(backlog)

    def window_open(self):
        """The inbound FIFO is below max_inflight again: read again."""
        if INFLIGHT in self._reading:
            self._liveness.saw()  # keepalive counts from when we read again
            self._reading.resume(INFLIGHT)

    # -- IPushProducer: the transport's write buffer is full / drained -----------------
    #
    # Registered with the transport once connected, so a client that reads slower than
    # we write cannot grow our memory: while its buffer is over the transport's limit,
    # QoS 0 messages to it are dropped (Session.deliver counts them), QoS 1/2 stay
    # bounded by max_inflight, and we stop reading from it, so a publisher that never
    # reads its PUBACKs stops being served instead of piling them up.

    def pauseProducing(self):
        self.writes_blocked = True
        self._reading.pause(WRITES)

    def resumeProducing(self):
        self.writes_blocked = False
        # The client drained its socket: it is alive and reading. Its packets wait unread
        # while we do not read, so keepalive counts from here.
        self._liveness.saw()
        session = self._member.session
        if session is not None:
            session.drained()  # may fill the socket again: then stay paused
        if not self.writes_blocked:
            self._reading.resume(WRITES)

    def stopProducing(self):
        self.writes_blocked = True
