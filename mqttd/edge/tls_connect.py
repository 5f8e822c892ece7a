"""A TLS client in the master: the handshake, its CONNECT, then the relay to its worker.

TLS is terminated in the master so that it can read the CONNECT inside it and stick by
client id exactly as for plain TCP (README, "Process tree"). A TLS socket cannot be
handed to a worker once the master has spoken TLS on it, so the master keeps it for the
connection's life: it runs TLS here (Twisted's TLSMemoryBIOProtocol over an adopted
transport, which is safe only because this socket is never handed off), reads the
CONNECT from the plaintext as ``connect_reader`` does from a plain socket, and then
hands the worker one end of a UNIX socketpair as the client's socket, with the bytes
read and the client's real address (``peer``). The plaintext is relayed between the
TLS connection and the master's end of the pair (``edge.relay``) for as long as either
side lives.

``PendingTLSConnect`` looks to the master like ``connect_reader.PendingConnect``: after
``on_connect(pending, connect)`` the master owns ``pending.sock`` (the worker's end,
closed once handed off, never shut down) and ``pending.preread``; before it,
``on_closed(pending, reason)`` says the client is gone and the door counts it free.
The handshake counts against ``idle_timeout``, counted from the accept.

A handshake that fails (plain MQTT on the TLS port, a version or certificate refused,
a peer that closes halfway, or one still unfinished at ``idle_timeout``) and a relay
that breaks after it are counted and logged by ``failures`` (``edge.tls_failures``).
"""
import socket

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from mqttd.codec import ProtocolError, encode_connack

from .adopt import AdoptionFailed, adopt_into
from .connect_reader import ConnectBuffer
from .relay import CLOSE_GRACE, Relay
from .tls_failures import CLOSE_TIMEOUT, TIMEOUT, handshake_failure, relay_failure

__all__ = ["PendingTLSConnect"]

_READING, _RELAYING, _CLOSED = range(3)


@implementer(IHandshakeListener)
class PendingTLSConnect(Protocol):
    """One TLS client, from accept (``start``) to the relay of its plaintext.

    The protocol inside the TLS transport; ``context`` is the listener's
    CertificateOptions (``edge.tls_context``), ``limits`` has ``idle_timeout``,
    ``max_connect_size`` and ``max_packet_size``; ``failures`` the listener's
    ``TLSFailures`` (None: nothing counted).
    """

    def __init__(self, reactor, context, sock, host, limits, on_connect, on_closed,
                 budget=None, failures=None, listener=None):
        self._reactor = reactor
        self._context = context
        self._accepted = sock
        self.host = host
        self.listener = listener  # its listener's key, for the door's release
        self.peer = None  # (host, port) of the client, for the worker
        self.sock = None  # the worker's end of the socketpair, from on_connect on
        self.preread = b""
        self._idle_timeout = limits.idle_timeout
        self._connect = ConnectBuffer(limits, budget, self)  # budgeted as plain sockets are
        self._on_connect = on_connect
        self._on_closed = on_closed
        self._state = _READING
        self._timer = None
        self._relay = None
        self._failures = failures
        self._handshake_done = False

    def start(self):
        """Run TLS on the accepted socket (which this now owns)."""
        sock, self._accepted = self._accepted, None
        self._timer = self._reactor.callLater(self._idle_timeout, self._overdue)
        try:
            self.peer = tuple(sock.getpeername()[:2])
            tls = TLSMemoryBIOFactory(self._context, False, Factory.forProtocol(lambda: self),
                                      clock=self._reactor)
            adopt_into(self._reactor, tls, sock.detach(), b"")
        except (AdoptionFailed, OSError) as e:
            sock.close()
            self._close(f"cannot start TLS: {e}")

    def handshakeCompleted(self):
        self._handshake_done = True

    def _overdue(self):
        """``idle_timeout`` since the accept, and no CONNECT: maybe no handshake yet."""
        if not self._handshake_done:
            self._handshake_failed(TIMEOUT, f"not done within {self._idle_timeout:g} s")
        self._close("no CONNECT in time")

    def _handshake_failed(self, reason, detail):
        if self._failures is not None:
            self._failures.handshake_failed(self.host, reason, detail)

    def abandon(self):
        """Close it now (the master is stopping); the door hears of it as usual."""
        self._close("master stopping")

    def dataReceived(self, data):
        if self._state == _RELAYING:
            self._relay.first.dataReceived(data)
            return
        if self._state != _READING:
            return
        try:
            connect = self._connect.feed(data)
        except ProtocolError as e:
            if e.connack_code is not None:
                self.transport.write(encode_connack(False, e.connack_code))
            self._close(f"protocol error: {e.reason}", flush=True)
            return
        if not self._connect.fits():
            self._close("partial input budget")
            return
        if connect is not None:
            self._relay_to_worker(connect)

    def packet_overdue(self):
        """PartialInput's deadline (broker.packet_timeout) for the CONNECT under way."""
        self._close("packet timeout")
        return True

    def _release_budget(self):
        if self._connect is not None:
            self._connect.release()

    def _relay_to_worker(self, connect):
        self._cancel_timer()
        self._release_budget()
        relay = Relay(self._reactor, when_lost=self._relay_lost)
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as e:  # out of file descriptors
            self._close(f"cannot open its relay: {e}")
            return
        ours.setblocking(False)
        theirs.setblocking(False)  # the flag travels with the fd to the worker
        try:
            # The worker's side is connected first, so no byte of the client's is dropped.
            adopt_into(self._reactor, Factory.forProtocol(lambda: relay.second),
                       ours.detach(), b"")
        except (AdoptionFailed, OSError) as e:
            theirs.close()
            self._close(f"cannot open its relay: {e}")
            return
        self._state = _RELAYING
        self._relay = relay
        self.sock = theirs
        self.preread = self._connect.preread
        self._connect = None
        relay.first.makeConnection(self.transport)
        self._on_connect(self, connect)

    def connectionLost(self, reason=None):
        if self._state == _RELAYING:
            self._relay.first.connectionLost(reason)
            return
        self._cancel_timer()  # a flushing close's grace
        if self._state == _READING:
            if not self._handshake_done:
                failed = handshake_failure(reason)
                if failed is not None:
                    self._handshake_failed(*failed)
            why = reason.getErrorMessage() if reason is not None else "connection lost"
            self._closed(f"lost before CONNECT: {why}")

    def _relay_lost(self, side, reason):
        """A side of the relay ended: count it if it broke (``edge.tls_failures``)."""
        if self._failures is None:
            return
        if reason is None:
            broken = CLOSE_TIMEOUT, f"not closed within {CLOSE_GRACE:g} s"
        else:
            broken = relay_failure(reason)
        if broken is not None:
            relay = self._relay  # None: only the worker's side has connected yet
            which = "client" if relay is not None and side is relay.first else "worker"
            self._failures.relay_broken(self.host, which, *broken)

    def _close(self, reason, flush=False):
        """Before the CONNECT: close the client's connection and tell the master."""
        if self._state != _READING:
            return
        transport = self.transport
        self._closed(reason)
        if transport is not None:
            if flush:  # a CONNACK refusal to send first
                transport.loseConnection()
                self._timer = self._reactor.callLater(CLOSE_GRACE, transport.abortConnection)
            else:
                transport.abortConnection()

    def _closed(self, reason):
        self._state = _CLOSED
        self._cancel_timer()
        self._release_budget()
        self._connect = None
        self._on_closed(self, reason)

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
