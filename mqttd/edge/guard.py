"""A door in front of a Twisted listener: how one process (``server.workers = 0``) asks
it at accept, before a byte is read.

``DoorFactory`` wraps the listener's factory. A port calls ``buildProtocol`` with the
peer's address as soon as it has accepted a socket; a refused peer gets None and the
port closes the fd at once (tcp and unix ports do, before they make a transport: no
read, no timer, no epoll registration). That holds only where the port calls this
factory itself: ``closes_at_accept(endpoint)`` says where. Behind a factory that wraps
this one (``ssl:``: TLSMemoryBIOFactory builds its protocol around ours and cannot take
None) a refused peer gets a protocol that aborts in ``makeConnection``, before the
first read and before the TLS handshake starts.

An admitted socket's protocol is handed to the transport inside ``_Released``, which
calls ``door.release(host)`` once, when the socket closes. It is a composition, not
twisted.protocols.policies' ProtocolWrapper: the real protocol gets the real transport,
so its writes, producer calls, pauses and aborts go straight to it; only
``makeConnection``, each read (``dataReceived``: one Python call more per read, not per
byte) and ``connectionLost`` pass through. The protocol must not need more of its
transport's side of IProtocol (a half-closeable one would not see ``readConnectionLost``).

Behind TLS (``is_tls(endpoint)``), ``_Released`` also hears when the handshake ends
(IHandshakeListener), and a connection lost before that is told to the listener's
``edge.tls_failures.HandshakeWatch``, which counts and logs the failure.
"""
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    SSL4ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IHandshakeListener, ILoggingContext, IProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from zope.interface import implementer

__all__ = ["DoorFactory", "closes_at_accept", "is_tls"]

# Endpoints whose port calls the factory it is given with each accepted socket.
_PORT_CALLS_US = (TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint,
                  AdoptedStreamServerEndpoint)


def closes_at_accept(endpoint):
    """Whether ``endpoint``'s port calls our factory itself, so a None closes the socket."""
    return isinstance(endpoint, _PORT_CALLS_US)


def is_tls(endpoint):
    """Whether ``endpoint``'s port runs Twisted's TLS around our factory's protocols."""
    return isinstance(endpoint, SSL4ServerEndpoint)


@implementer(IProtocol, ILoggingContext)
class _Released:
    """An admitted connection's protocol as its transport sees it (see the module)."""

    __slots__ = ("_protocol", "_door", "_host", "_listener")

    def __init__(self, protocol, door, host, listener=None):
        self._protocol = protocol
        self._door = door
        self._host = host
        self._listener = listener

    def makeConnection(self, transport):
        self._protocol.makeConnection(transport)

    def dataReceived(self, data):
        self._protocol.dataReceived(data)

    def connectionLost(self, reason):
        door, self._door = self._door, None
        try:
            self._protocol.connectionLost(reason)
        finally:
            if door is not None:
                door.release(self._host, self._listener)

    def logPrefix(self):
        """The real protocol's, for the transport's log lines."""
        prefix = getattr(self._protocol, "logPrefix", None)
        return prefix() if prefix is not None else type(self._protocol).__name__


@implementer(IHandshakeListener)
class _ReleasedTLS(_Released):
    """``_Released`` behind TLS: a connection lost before its handshake ended is told to
    the ``HandshakeWatch``."""

    __slots__ = ("_watch", "_accepted_at", "_handshake_done")

    def __init__(self, protocol, door, host, watch, listener=None):
        super().__init__(protocol, door, host, listener)
        self._watch = watch
        self._accepted_at = watch.accepted()
        self._handshake_done = False

    def handshakeCompleted(self):
        self._handshake_done = True
        if IHandshakeListener.providedBy(self._protocol):
            self._protocol.handshakeCompleted()

    def connectionLost(self, reason):
        try:
            if not self._handshake_done:
                self._handshake_done = True  # told once
                self._watch.lost(self._host, self._accepted_at, reason)
        finally:
            super().connectionLost(reason)


class _Aborted(Protocol):
    """A refused socket behind a wrapping factory: closed before its first read."""

    def makeConnection(self, transport):
        transport.abortConnection()


class DoorFactory(ServerFactory):
    """``factory``'s protocols, for the peers ``door`` admits.

    ``close_at_accept``: the port calls this factory itself (``closes_at_accept``), so a
    refused socket is closed by returning None; else it gets an aborting protocol.
    ``handshakes``: behind TLS, the listener's ``HandshakeWatch`` (see the module).
    ``listener``: its key (``server.listen[i]``), for the door's count by listener.
    ``on_refused(addr, refusal)``: told of each refusal (the per-client trace), if given.
    """

    noisy = False

    def __init__(self, door, factory, close_at_accept=True, handshakes=None, listener=None,
                 on_refused=None):
        self.door = door
        self.factory = factory
        self._close_at_accept = close_at_accept
        self._handshakes = handshakes
        self._on_refused = on_refused
        self._listener = listener

    def doStart(self):
        self.factory.doStart()
        super().doStart()

    def doStop(self):
        super().doStop()
        self.factory.doStop()

    def logPrefix(self):
        return self.factory.logPrefix()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)  # a unix socket's peer has none
        listener = self._listener
        refusal = self.door.admit(host, listener)
        if refusal is not None:
            if self._on_refused is not None:
                self._on_refused(addr, refusal)
            return None if self._close_at_accept else _Aborted()
        try:
            protocol = self.factory.buildProtocol(addr)
        except BaseException:
            self.door.release(host, listener)
            raise
        if protocol is None:
            self.door.release(host, listener)
            return None
        if self._handshakes is not None:
            return _ReleasedTLS(protocol, self.door, host, self._handshakes, listener)
        return _Released(protocol, self.door, host, listener)
