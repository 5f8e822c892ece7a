"""The master's accept loop on a raw listening socket: the door decides before any read.

A refused socket costs one accept and one close: no Twisted transport, no protocol, no
read. It is closed with SO_LINGER 0, a reset, so a flood of refused connects leaves no
TIME_WAIT behind on the appliance. An admitted socket goes, still unread, to
``on_admitted(sock, host)``; from then on the caller owns it and must tell the door
when it closes (``door.release(host, key)``: admitted on the listener ``key``).
"""
import errno
import socket
import struct

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

ACCEPT_BATCH = 256
"""Accepts per readiness event: enough to drain a burst in few reactor turns, few enough
that the CONNECTs already waiting are read in between."""

RESUME_AFTER = 0.1
"""Seconds to stop accepting when the process is out of file descriptors: the listening
socket stays readable (level-triggered), so trying again at once would spin."""

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends a RST, no TIME_WAIT
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def close_with_reset(sock):
    """Close ``sock`` (never handed off) at once, with a RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    except OSError:
        pass  # a unix socket, or already reset by the peer
    sock.close()


@implementer(IReadDescriptor)
class RawAcceptor:
    """Accepts on ``sock`` while started; ``door.admit(host)`` judges each connection.

    ``host`` is the peer's IP address as a string, or None for a unix socket peer.
    ``on_accept(address, refusal)``, if given, hears of every socket accepted, with the
    door's Refusal or None (the per-client trace's accept and refusal events).
    """

    def __init__(self, reactor, sock, key, door, on_admitted, on_accept=None):
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self.key = key
        self._door = door
        self._on_admitted = on_admitted
        self._on_accept = on_accept
        self._inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._reading = False
        self._resume = None

    @property
    def address(self):
        return self._sock.getsockname()

    def start(self):
        if not self._reading and self._sock.fileno() >= 0:
            self._reading = True
            self._reactor.addReader(self)

    def stop(self):
        """Stop accepting for good and close the listening socket."""
        self._pause()
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None
        self._sock.close()

    def _pause(self):
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return f"mqttd-accept {self.key}"

    def connectionLost(self, reason):
        self._reading = False

    def doRead(self):
        sock = self._sock
        door = self._door
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno in _OUT_OF_FDS:
                    log.warn("{key}: cannot accept: {error}; pausing accepts for {delay} s",
                             key=self.key, error=e.strerror, delay=RESUME_AFTER)
                    self._pause()
                    self._resume = self._reactor.callLater(RESUME_AFTER, self.start)
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that one connection went before we took it
                raise
            host = address[0] if self._inet else None
            refusal = door.admit(host, self.key)
            if self._on_accept is not None:
                self._on_accept(address, refusal)
            if refusal is not None:
                close_with_reset(conn)
                continue
            conn.setblocking(False)
            if self._inet:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._on_admitted(conn, host)
