"""How a connection closes: once, for one reason, and never holding its slot for long.

``MQTTServerProtocol`` (``mqttd.broker.protocol``) takes these from ``Closing``, a
slotted mixin holding no state of its own, as it takes ``FlowControl``: the closes
others ask for (the broker's stop, a takeover, the gate's kick) and the one close every
reason goes through (``_close``: leave the broker, the will unless the client said
DISCONNECT, then a graceful or an aborted close with a deadline). Apart, so that the
protocol keeps to bytes, packets and timers.
"""
from mqttd.broker.flow import _CLOSED, _CONNECTED
from mqttd.codec.packets import Disconnect

__all__ = ["Closing"]

_CLOSE_GRACE = 10.0
"""Seconds a connection mqttd closes may take to finish closing before it is aborted: a
client that never reads its last bytes, or never answers TLS's close_notify, would
otherwise keep its socket and its max_connections slot."""


def _has_disconnect(backlog):
    """Whether packets read but not handled yet (``_backlog``) include a DISCONNECT."""
    return bool(backlog) and any(type(packet) is Disconnect for packet in backlog)


class Closing:
    """The closing half of a connection (reads and sets ``_state``, reads ``transport``,
    ``_reading``, ``_liveness``, ``_backlog``, ``inbound``, ``_member`` and
    ``_producer_registered`` of the protocol)."""

    __slots__ = ()

    def server_stopping(self):
        """Close for the broker's stop, after its acknowledgements: no will, since the
        client did nothing wrong and the sink takes nothing more.

        A half-close where the transport has one (TCP): the client reads our last acks,
        then EOF. A full close with its later PUBLISHes still unread would make the
        kernel reset the connection, and the client's kernel would then discard the
        acks it had not read yet. What it still sends is read and dropped until it
        closes (or the close grace ends)."""
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None or self._state >= _CLOSED:
            self._close("server stopping", will=False)
            return
        self._shutdown("server stopping", will=False)
        self._reading.read_to_close()
        if self._producer_registered:
            self._producer_registered = False
            self.transport.unregisterProducer()
        half_close()
        self._liveness.grace(_CLOSE_GRACE, self.transport.abortConnection)

    def take_over(self):
        """Another connection claimed this client id [MQTT-3.1.4-2]; close abnormally."""
        self._close("takeover")

    def kicked(self, reason):
        """The gate refuses this client now (``Broker.kick``); close abnormally."""
        self._close("kicked", detail=reason)

    def _close(self, reason, abort=False, will=True, detail=None):
        """Close this connection (and only this one) for ``reason``, once."""
        if self._state >= _CLOSED:
            return
        self._shutdown(reason, will, detail)
        if abort:
            self.transport.abortConnection()
        else:
            self._reading.read_to_close()
            # A transport with a registered producer closes only once it is unregistered.
            if self._producer_registered:
                self._producer_registered = False
                self.transport.unregisterProducer()
            self.transport.loseConnection()
            # The keepalive timer's slot (cancelled by _shutdown); connectionLost cancels it.
            self._liveness.grace(_CLOSE_GRACE, self.transport.abortConnection)

    def _shutdown(self, reason, will=True, detail=None):
        """Leave the broker: drop pending acks, detach the session, publish the will."""
        state = self._state
        self._state = _CLOSED
        self._reading.closed()
        self._liveness.cancel()
        # [MQTT-3.1.2-10] no will on DISCONNECT, also one read but still waiting behind
        # a paused publish (a takeover or the ack deadline closes us first).
        will = will and state == _CONNECTED and not _has_disconnect(self._backlog)
        inbound = self.inbound
        if inbound is not None:
            inbound.close()  # the FIFO stays until the store settles it
        self._member.leave(self, inbound, reason, detail, will)
