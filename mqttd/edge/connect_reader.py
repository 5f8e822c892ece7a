"""Reads one admitted socket's CONNECT in the master, so the balancer can stick by client id.

The master reads only what it must: bytes up to the end of the CONNECT (at most
``max_connect_size``, checked from the header before the body arrives), within
``idle_timeout`` of the accept. Whatever else arrived in the same reads is kept
unparsed and handed to the worker with the CONNECT, which parses it all again as if it
had read it itself. A socket that is silent, closes, or sends something that is not a
CONNECT is closed here, and the door hears of it; a CONNECT that names a protocol this
broker does not speak gets its CONNACK refusal first, as from a worker.
"""
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from mqttd.codec import Connect, Parser, ProtocolError, encode_connack, first_packet_size

log = Logger()

READ_SIZE = 65536


class ConnectBuffer:
    """Bytes in, the CONNECT out: what a plain socket and a TLS connection both read.

    ``feed(data)`` returns the Connect once it is whole (``preread`` is then every byte
    fed, the CONNECT and whatever came after it in the same reads), else None; it raises
    ProtocolError (with ``connack_code`` for a CONNECT that gets a CONNACK refusal) as
    soon as the bytes break a rule. It holds at most ``max_connect_size`` plus one read.
    """

    def __init__(self, limits, budget=None, owner=None):
        self._parser = Parser(limits.max_packet_size, max_connect_size=limits.max_connect_size)
        # The master's budget of partly read input (broker.max_partial_bytes), a
        # mqttd.broker.budget.PartialInput, for ``owner`` (who has ``packet_overdue``):
        # a flood of half-sent CONNECTs from many addresses must not grow the master.
        self._budget = budget
        self._owner = owner
        self._held = 0
        self._fed = 0  # bytes of _buf given to the parser
        self._buf = bytearray()
        self.preread = b""

    def feed(self, data):
        buf = self._buf
        buf += data
        # Feed the parser the CONNECT's bytes only (all of them while its header is
        # incomplete: those are the CONNECT's too); it checks the first byte and the
        # size limit as soon as it can, and returns the CONNECT once it is whole.
        end = min(first_packet_size(buf) or len(buf), len(buf))
        packets = self._parser.feed(bytes(buf[self._fed:end]))
        self._fed = end
        if not packets:
            return None
        connect = packets[0]
        if not isinstance(connect, Connect):  # the parser refuses any other first packet
            raise ProtocolError("first packet is not CONNECT")
        self.preread = bytes(buf)
        self._buf = None
        return connect

    def fits(self):
        """After a ``feed``: whether the CONNECT under way still fits the budget (it is
        counted at what it may come to, ``Parser.partial_size``; nothing once read)."""
        if self._budget is None:
            return True
        held = 0 if self._buf is None else self._parser.partial_size
        if not self._budget.hold(self._owner, self._held, held, self._buf is None):
            return False
        self._held = held
        return True

    def release(self):
        """Its owner is done with it (handed on or closed): give its bytes back."""
        if self._budget is not None:
            self._budget.release(self._owner, self._held)
            self._held = 0


@implementer(IReadDescriptor)
class PendingConnect:
    """One socket between accept and hand-off.

    ``on_connect(pending, connect)`` once its CONNECT is whole (then the caller owns the
    socket: ``pending.sock``, ``pending.preread``); ``on_closed(pending, reason)`` when it
    is closed here instead (silent, gone, malformed). ``peer`` is None: the worker reads
    the peer's address from the socket itself. ``listener``: the key of the listener
    that accepted it, for the door's release.
    """

    peer = None

    def __init__(self, reactor, sock, host, limits, on_connect, on_closed, budget=None,
                 listener=None):
        self._reactor = reactor
        self.sock = sock
        self._fd = sock.fileno()
        self.host = host
        self.listener = listener
        self._connect = ConnectBuffer(limits, budget, self)
        self._on_connect = on_connect
        self._on_closed = on_closed
        self._open = True
        self.preread = b""
        self._timer = reactor.callLater(limits.idle_timeout, self._close, "no CONNECT in time")
        reactor.addReader(self)

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return "mqttd-connect"

    def connectionLost(self, reason):
        self._close("lost")

    def doRead(self):
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._close(e.strerror or str(e))
            return
        if not data:
            self._close("closed before CONNECT")
            return
        try:
            connect = self._connect.feed(data)
        except ProtocolError as e:
            if e.connack_code is not None:
                try:
                    self.sock.send(encode_connack(False, e.connack_code))
                except OSError:
                    pass
            self._close(f"protocol error: {e.reason}")
            return
        if not self._connect.fits():
            self._close("partial input budget")
            return
        if connect is None:
            return
        self._finish()
        self._open = False
        self.preread = self._connect.preread
        self._on_connect(self, connect)

    def abandon(self):
        """Close it now (the master is stopping); the door hears of it as usual."""
        self._close("master stopping")

    def packet_overdue(self):
        """PartialInput's deadline (broker.packet_timeout) for the CONNECT under way."""
        self._close("packet timeout")
        return True

    def _finish(self):
        self._reactor.removeReader(self)
        self._connect.release()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _close(self, reason):
        if not self._open:
            return
        self._open = False
        self._finish()
        self.sock.close()
        self._on_closed(self, reason)
