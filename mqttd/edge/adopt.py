"""A worker gives a handed-off client socket to a protocol: ``adopt_into``.

The master read the CONNECT (and maybe more) before handing the socket off, so the
protocol must see those bytes first, before the reactor reads the socket again: fed
synchronously, right after adoptStreamConnection and before returning to the reactor.
adoptStreamConnection dups the fd, so the one received is closed here, always; and it
neither returns the protocol (by its interface) nor calls ``startFactory`` (the worker
starts its factory once itself). A connection the master relays (TLS) comes with the
client's address, ``peer``: its protocol's transport reports that one (``edge.peer``).
"""
import os
import socket

from twisted.internet import protocol
from twisted.logger import Logger

from .peer import ReportedPeer, peer_address

__all__ = ["AdoptionFailed", "adopt_into"]

log = Logger()


class AdoptionFailed(Exception):
    """adopt_into could not give the socket to a protocol."""


class _Capture(protocol.Factory):
    """Builds with ``factory`` and remembers the protocol it built."""

    def __init__(self, factory):
        self._factory = factory
        self.built = None

    def buildProtocol(self, addr):
        self.built = self._factory.buildProtocol(addr)
        return self.built


def adopt_into(reactor, factory, fd, preread, peer=None, prepare=None):
    """Give the client socket ``fd`` (TCP over IPv4 or IPv6, or UNIX stream: the family
    is read from the fd) to a protocol of ``factory``, feed it ``preread``, close ``fd``.
    ``peer``, a ``(host, port)``, is the address its transport reports (the socket's
    own if None). ``prepare(protocol)`` is called before the protocol reads a byte.

    Returns the protocol. Raises AdoptionFailed or OSError if there is none (not a
    stream socket, the client reset it, the factory refused, connectionMade raised);
    the fd is closed all the same.
    """
    try:
        if peer is not None:
            factory = ReportedPeer(factory, peer_address(peer))
        capture = _Capture(factory)
        try:
            reactor.adoptStreamConnection(fd, _stream_family(fd), capture)
        except Exception:
            if capture.built is not None and capture.built.transport is not None:
                capture.built.transport.abortConnection()
            raise
        built = capture.built
        if built is None or (peer is not None and built.wrappedProtocol is None):
            raise AdoptionFailed("the factory built no protocol")
        protocol = built if peer is None else built.wrappedProtocol
        if prepare is not None:
            prepare(protocol)
        if preread and not built.transport.disconnecting:
            try:
                protocol.dataReceived(preread)
            except Exception:
                log.failure("the adopted protocol failed on the bytes the master read")
                built.transport.abortConnection()
        return protocol
    finally:
        os.close(fd)


def _stream_family(fd):
    probe = socket.socket(fileno=fd)  # reads the family and type from the fd
    try:
        if probe.type != socket.SOCK_STREAM:
            raise AdoptionFailed(f"fd {fd} is not a stream socket")
        return probe.family
    finally:
        probe.detach()
