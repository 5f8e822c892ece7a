"""The incremental stream parser: bytes as they arrive -> whole packet objects.

Why it is shaped this way:

* Whole packets are decoded straight out of the caller's chunk through a memoryview, so
  the common case (a read holding one or many complete packets) copies nothing but the
  final ``str``/``bytes`` fields, and coalesced packets cost O(total), not O(n^2).
* Only the unfinished tail of a chunk is kept, in a bytearray that never holds more
  than one packet: the remaining-length header is checked against ``max_packet_size``
  before any body byte is buffered, so a peer cannot make us hold more than
  ``max_packet_size + 5`` bytes (5 = the longest incomplete header we may hold). Until
  the CONNECT is read the limit is ``max_connect_size``: a peer nobody authenticated yet
  may make us hold only that much.
* Everything decided by the first byte (reserved types, fixed-header flags, direction,
  PUBLISH QoS 3 / DUP with QoS 0, CONNECT first and only once) is one lookup in a
  256-entry table of reasons, chosen per side and swapped after the CONNECT.
* A ProtocolError kills the parser: the stream is out of sync, the connection must go.
"""
from mqttd.codec import packets as p
from mqttd.codec.decode import DECODERS, FIXED_LENGTH
from mqttd.codec.errors import ProtocolError

DEFAULT_MAX_PACKET_SIZE = 1048576

_NAMES = ("reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
          "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP",
          "DISCONNECT", "reserved type 15")
_FROM_CLIENT = frozenset((p.CONNECT, p.PUBLISH, p.PUBACK, p.PUBREC, p.PUBREL, p.PUBCOMP,
                          p.SUBSCRIBE, p.UNSUBSCRIBE, p.PINGREQ, p.DISCONNECT))
_FROM_SERVER = frozenset((p.CONNACK, p.PUBLISH, p.PUBACK, p.PUBREC, p.PUBREL, p.PUBCOMP,
                          p.SUBACK, p.UNSUBACK, p.PINGRESP))
_FLAGS_0010 = frozenset((p.PUBREL, p.SUBSCRIBE, p.UNSUBSCRIBE))


def _first_byte_reason(first, accepted, sender):
    """Why ``first`` may not open a packet from ``sender``, or None if it may."""
    kind, flags = first >> 4, first & 0x0F
    if kind in (0, 15):
        return f"packet type {kind} is reserved [MQTT-2.2.1]"
    if kind == p.PUBLISH:
        if flags & 0x06 == 0x06:
            return "PUBLISH QoS is 3 [MQTT-3.3.1-4]"
        if flags & 0x08 and not flags & 0x06:
            return "PUBLISH DUP flag set with QoS 0 [MQTT-3.3.1-2]"
    elif flags != (0x02 if kind in _FLAGS_0010 else 0):
        return f"{_NAMES[kind]} fixed-header flags {flags:#06b} are invalid [MQTT-2.2.2-1]"
    if kind not in accepted:
        return f"{_NAMES[kind]} may not be sent by a {sender}"
    return None


def _table(accepted, sender, amend=lambda first, kind: None):
    table = []
    for first in range(256):
        reason = _first_byte_reason(first, accepted, sender)
        table.append(reason if reason is not None else amend(first, first >> 4))
    return tuple(table)


_CLIENT_SENDS = _table(_FROM_CLIENT, "client", lambda first, kind: (
    "second CONNECT on one connection [MQTT-3.1.0-2]" if kind == p.CONNECT else None))
_CLIENT_SENDS_FIRST = _table(_FROM_CLIENT, "client", lambda first, kind: (
    None if kind == p.CONNECT
    else f"first packet is {_NAMES[kind]}, not CONNECT [MQTT-3.1.0-1]"))
_SERVER_SENDS = _table(_FROM_SERVER, "server")


def _long_length(view, pos, end):
    """(remaining length, header size) for a multi-byte length; (0, 0) while incomplete.

    At most four length bytes are read, so this loop is bounded and runs only for
    packets of 128 bytes or more.
    """
    value = shift = 0
    for i in range(pos + 1, min(pos + 5, end)):
        byte = view[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i - pos + 1
        shift += 7
    if end >= pos + 5:
        raise ProtocolError("remaining length is longer than 4 bytes [MQTT-2.2.3]")
    return 0, 0


def first_packet_size(data):
    """The size of the packet that ``data`` begins with once its fixed header is in
    (0 while it is not), so a reader can take exactly one packet off a stream: the
    master reads a client's CONNECT and hands every later byte on unparsed."""
    end = len(data)
    if end < 2:
        return 0
    length = data[1]
    if length < 0x80:
        return 2 + length
    length, head = _long_length(memoryview(data), 0, end)
    return head + length if head else 0


class Parser:
    """Turns a byte stream into packets; ``server=True`` parses what a client sends."""

    def __init__(self, max_packet_size=DEFAULT_MAX_PACKET_SIZE, server=True,
                 max_connect_size=None):
        if max_packet_size < 2:
            raise ValueError(f"max_packet_size {max_packet_size} is below 2 bytes")
        self.max_packet_size = max_packet_size
        self.server = server
        self._table = _CLIENT_SENDS_FIRST if server else _SERVER_SENDS
        # The limit for the next packet: the CONNECT's, until it is read (server side).
        self._limit = max_packet_size
        self._limit_name = "max_packet_size"
        if server and max_connect_size is not None and max_connect_size < max_packet_size:
            self._limit = max_connect_size
            self._limit_name = "max_connect_size"
        self._buf = bytearray()     # the unfinished start of exactly one packet
        self._need = 0              # its total size once its header is known, else 0
        self._error = None

    @property
    def buffered(self):
        """Bytes held for an unfinished packet (never above max_packet_size + 5)."""
        return len(self._buf)

    @property
    def partial_size(self):
        """What the unfinished packet may come to hold: its whole size once its header
        is read (it is buffered up to that), else the few header bytes held; 0 when no
        packet is unfinished. This is what a budget of partly read input counts."""
        return self._need or len(self._buf)

    @property
    def failed(self):
        """The ProtocolError that killed this parser, or None."""
        return self._error

    def feed(self, data):
        """Parse ``data``; return the packets it completes, in order (maybe none)."""
        if self._error is not None:
            raise ProtocolError(f"parser already failed: {self._error.reason}",
                                self._error.connack_code)
        try:
            return self._feed(data)
        except ProtocolError as e:
            self._error = e
            self._buf = bytearray()
            self._need = 0
            raise

    def _feed(self, data):
        out = []
        buf = self._buf
        with memoryview(data) as chunk:
            start, end = 0, len(chunk)
            # Complete the pending packet first, taking from the chunk only what it needs
            # (or what completes its header); then the rest is parsed in place.
            while buf and start < end:
                held = len(buf)
                take = chunk[start:start + (self._need or 5) - held]
                buf += take
                with memoryview(buf) as view:
                    done = self._parse(view, 0, len(buf), out)
                if done:
                    # ``done`` may overshoot the pending packet when header bytes taken
                    # from the chunk belong to the next packets: they were decoded too.
                    start += done - held
                    buf.clear()
                    self._need = 0
                else:
                    start += len(take)
            if start < end:
                done = self._parse(chunk, start, end, out)
                if done < end:
                    buf += chunk[done:]
        return out

    def _parse(self, view, pos, end, out):
        """Decode whole packets from view[pos:end] into ``out``; return where they stop.

        Leaves ``self._need`` set to the size of the unfinished packet, if its header is
        complete.
        """
        table = self._table
        max_size = self._limit
        decoders = DECODERS
        fixed = FIXED_LENGTH
        while pos < end:
            first = view[pos]
            reason = table[first]
            if reason is not None:
                raise ProtocolError(reason)
            if pos + 1 == end:
                break
            length = view[pos + 1]
            if length < 0x80:
                head = 2
            else:
                length, head = _long_length(view, pos, end)
                if not head:
                    break
            total = head + length
            if total > max_size:
                raise ProtocolError(f"{_NAMES[first >> 4]} of {total} bytes exceeds "
                                    f"{self._limit_name} {max_size}")
            kind = first >> 4
            want = fixed[kind]
            if want != length and want >= 0:
                raise ProtocolError(
                    f"{_NAMES[kind]} remaining length is {length}, must be {want}")
            if pos + total > end:
                self._need = total
                return pos
            out.append(decoders[kind](first, view, pos + head, pos + total))
            pos += total
            if first == 0x10:
                table = self._table = _CLIENT_SENDS
                max_size = self._limit = self.max_packet_size
                self._limit_name = "max_packet_size"
        self._need = 0
        return pos
