"""The hand-off channel's wire format: length-prefixed frames, no I/O.

One UNIX stream socket joins the master and a worker. Everything on it is a frame:
a 5-byte header (body length, big-endian u32; frame type, u8) and its body. Six types:

- ``HANDOFF`` (master -> worker): conn id (u64) + the bytes the master already read
  from the client. The client's fd rides (SCM_RIGHTS) on some byte of the stream no
  later than this frame's last byte: the worker pairs received fds with hand-off frames
  in order, so a frame needs no fd slot of its own.
- ``HANDOFF_FROM`` (master -> worker): a hand-off whose fd is not the client's own
  socket but the master's relay of it (TLS, terminated in the master), so it names the
  client's address: conn id (u64) + port (u16) + host length (u8) + host (ASCII) + the
  bytes read. Paired with an fd exactly as ``HANDOFF``.
- ``HANDOFF_AS`` (master -> worker): a hand-off the master's gate judged: conn id (u64)
  + port (u16) + host length (u8; 0: no relay, the fd's own peer) + host + account
  length (u8; 0: none) + account (UTF-8) + client id length (u16; 0: the client's own)
  + the client id the master generated for an empty one (UTF-8) + the bytes read. The
  worker does not authenticate that client again. Paired with an fd as ``HANDOFF``.
- ``ACK`` (worker -> master): conn id (u64) + 1 if adopted, 0 if not + a UTF-8 reason.
- ``MESSAGE`` (both ways): kind length (u8) + kind (UTF-8) + JSON object. JSON because
  the payloads (a closed conn id, subscription interest) change as
  the tree grows and cost a few microseconds each; the hot path (hand-off, ack) is packed.
- ``FORWARD`` (both ways): flags (u8) + slot count (u16) + slots (u16 each) + an opaque
  body: a publish one worker routes to others through the master (``mqttd.tree.relay``).
  Binary, not JSON: the body carries a payload's raw bytes (base64 would cost a third
  more bytes and an encode and a decode per message), and the master relays it without
  reading it, rewriting only the slots (the targets going up, the origin coming down).

A header that declares more than ``MAX_BODY`` bytes (a FORWARD frame: the reader's
``max_forward_body``, which the tree sizes from ``broker.max_packet_size``) is refused as
soon as it arrives, so a broken peer cannot make the reader buffer more than one frame.
"""
import json
import struct

import attrs

__all__ = [
    "ACK", "FORWARD", "HANDOFF", "HANDOFF_AS", "HANDOFF_FROM", "MAX_BODY", "MAX_PAYLOAD", "MESSAGE",
    "Ack", "ChannelProtocolError", "Forward", "FrameReader", "Handoff", "Message",
    "decode", "encode_ack", "encode_forward", "encode_handoff", "encode_message",
]

HANDOFF, ACK, MESSAGE, HANDOFF_FROM, FORWARD, HANDOFF_AS = 1, 2, 3, 4, 5, 6

MAX_PAYLOAD = 4 * 1024 * 1024
"""The largest preread, JSON payload or reason a frame carries."""
MAX_KIND = 255  # bytes of a message's kind (its length is one byte)
MAX_HOST = 64  # bytes of a peer's host: an IPv6 address with a scope id fits
MAX_BODY = MAX_PAYLOAD + 1 + MAX_KIND
"""The largest frame body: a payload plus the biggest fixed part (a message's kind,
bigger than a HANDOFF_FROM's conn id, port and host)."""

HEADER = struct.Struct(">IB")
_CONN = struct.Struct(">Q")
_ACK = struct.Struct(">QB")
_HANDOFF_HEAD = struct.Struct(">IBQ")  # header + conn id, packed at once: the hot path
_ACK_HEAD = struct.Struct(">IBQB")
_FROM_HEAD = struct.Struct(">IBQHB")  # header + conn id + port + host length
_FROM = struct.Struct(">QHB")
_MAX_CONN_ID = 2 ** 64 - 1
_MAX_REASON = 1024  # characters of an ack's reason: a log line, not a payload
_FORWARD_HEAD = struct.Struct(">IBBH")  # header + flags + slot count
_FORWARD_FIXED = _FORWARD_HEAD.size - HEADER.size
_MAX_SLOT = 0xFFFF
_NAMES = {HANDOFF: "hand-off", ACK: "ack", MESSAGE: "message", HANDOFF_FROM: "hand-off",
          FORWARD: "forward", HANDOFF_AS: "hand-off"}
_AS_HEAD = struct.Struct(">IBQHB")  # header + conn id + port + host length
_AS = struct.Struct(">QHB")
_MAX_ACCOUNT = 255  # bytes of an account name (its length is one byte; names are <= 64)
_MAX_CLIENT_ID = 0xFFFF


class ChannelProtocolError(Exception):
    """The peer broke the channel's wire format; the message says how."""


@attrs.frozen(slots=True)
class Handoff:
    conn_id: int
    preread: bytes
    peer: tuple | None = None  # (host, port) of a relayed client
    decided: tuple | None = None  # HANDOFF_AS: (account or None, client id or None)


@attrs.frozen(slots=True)
class Ack:
    conn_id: int
    adopted: bool
    reason: str = ""


@attrs.frozen(slots=True)
class Message:
    kind: str
    payload: dict


@attrs.frozen(slots=True)
class Forward:
    flags: int
    slots: tuple
    body: bytes


def type_name(frame_type):
    return _NAMES.get(frame_type, f"unknown type {frame_type}")


def _check_conn_id(conn_id):
    if not 0 <= conn_id <= _MAX_CONN_ID:
        raise ValueError(f"conn id {conn_id!r} is not an unsigned 64-bit integer")


def encode_handoff(conn_id, preread, peer=None, decided=None):
    """A HANDOFF frame, or a HANDOFF_FROM one if ``peer`` (host, port) is given, or a
    HANDOFF_AS one if ``decided`` (account or None, client id or None) is."""
    _check_conn_id(conn_id)
    if len(preread) > MAX_PAYLOAD:
        raise ValueError(f"preread of {len(preread)} bytes exceeds {MAX_PAYLOAD}")
    if decided is not None:
        return _encode_handoff_as(conn_id, preread, peer, decided)
    if peer is None:
        return _HANDOFF_HEAD.pack(_CONN.size + len(preread), HANDOFF, conn_id) + preread
    host, port = peer
    name = host.encode("ascii")
    if not 0 < len(name) <= MAX_HOST or not 0 <= port <= 0xFFFF:
        raise ValueError(f"peer {peer!r} is not a host of 1..{MAX_HOST} bytes and a port")
    size = _FROM.size + len(name) + len(preread)
    return _FROM_HEAD.pack(size, HANDOFF_FROM, conn_id, port, len(name)) + name + preread


def _encode_handoff_as(conn_id, preread, peer, decided):
    host, port = peer if peer is not None else ("", 0)
    name = host.encode("ascii")
    account = (decided[0] or "").encode("utf-8")
    client_id = (decided[1] or "").encode("utf-8")
    if (len(name) > MAX_HOST or not 0 <= port <= 0xFFFF or len(account) > _MAX_ACCOUNT
            or len(client_id) > _MAX_CLIENT_ID):
        raise ValueError(f"hand-off as {decided!r} from {peer!r}: a field is too long")
    size = (_AS.size + len(name) + 1 + len(account) + 2 + len(client_id) + len(preread))
    return b"".join((_AS_HEAD.pack(size, HANDOFF_AS, conn_id, port, len(name)), name,
                     bytes((len(account),)), account, len(client_id).to_bytes(2, "big"),
                     client_id, preread))


def _decode_handoff_as(body):
    if len(body) < _AS.size:
        raise ChannelProtocolError(f"hand-off frame of {len(body)} bytes is too short")
    conn_id, port, size = _AS.unpack_from(body)
    at = _AS.size
    host = _field(body, at, size, "peer host", "ascii")
    at += size
    size = body[at] if len(body) > at else None
    if size is None:
        raise ChannelProtocolError("hand-off frame has no account length")
    account = _field(body, at + 1, size, "account", "utf-8")
    at += 1 + size
    if len(body) < at + 2:
        raise ChannelProtocolError("hand-off frame has no client id length")
    size = int.from_bytes(body[at:at + 2], "big")
    client_id = _field(body, at + 2, size, "client id", "utf-8")
    at += 2 + size
    return Handoff(conn_id, body[at:], (host, port) if host else None,
                   (account or None, client_id or None))


def _field(body, start, size, what, encoding):
    if len(body) < start + size:
        raise ChannelProtocolError(f"hand-off frame ends inside its {what}")
    try:
        return body[start:start + size].decode(encoding)
    except UnicodeDecodeError:
        raise ChannelProtocolError(f"hand-off {what} is not {encoding}") from None


def encode_ack(conn_id, adopted, reason=""):
    _check_conn_id(conn_id)
    text = reason[:_MAX_REASON].encode("utf-8")
    return _ACK_HEAD.pack(_ACK.size + len(text), ACK, conn_id, 1 if adopted else 0) + text


def encode_message(kind, payload):
    """A MESSAGE frame; ValueError (nothing sent) for a kind or payload that cannot go."""
    name = kind.encode("utf-8")
    if not 0 < len(name) <= MAX_KIND:
        raise ValueError(f"message kind {kind!r} must be 1..{MAX_KIND} UTF-8 bytes")
    if not isinstance(payload, dict):
        raise ValueError(f"message payload must be a dict, not {type(payload).__name__}")
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_PAYLOAD:
        raise ValueError(f"{kind} payload of {len(body)} bytes exceeds {MAX_PAYLOAD}")
    return b"".join((HEADER.pack(1 + len(name) + len(body), MESSAGE), bytes((len(name),)),
                     name, body))


def encode_forward(flags, slots, body):
    """A FORWARD frame: ``flags`` (0..255), ``slots`` (worker slots, 0..65535 each) and
    ``body`` (bytes, not read here). ValueError (nothing sent) for what cannot go."""
    count = len(slots)
    if not 0 <= flags <= 0xFF or count > _MAX_SLOT:
        raise ValueError(f"forward frame: flags {flags!r} or {count} slots out of range")
    try:
        packed = struct.pack(f">{count}H", *slots)
    except struct.error:
        raise ValueError(f"forward frame: slots {slots!r} are not 0..{_MAX_SLOT}") from None
    return b"".join((_FORWARD_HEAD.pack(_FORWARD_FIXED + len(packed) + len(body), FORWARD,
                                        flags, count), packed, body))


def decode(frame_type, body):
    """The value a frame carries; ChannelProtocolError if its body is malformed."""
    if frame_type == HANDOFF:
        if len(body) < _CONN.size:
            raise ChannelProtocolError(f"hand-off frame of {len(body)} bytes has no conn id")
        return Handoff(_CONN.unpack_from(body)[0], body[_CONN.size:])
    if frame_type == HANDOFF_FROM:
        if len(body) < _FROM.size:
            raise ChannelProtocolError(f"hand-off frame of {len(body)} bytes has no peer")
        conn_id, port, size = _FROM.unpack_from(body)
        end = _FROM.size + size
        if not size or len(body) < end:
            raise ChannelProtocolError("hand-off frame has no peer host")
        try:
            host = body[_FROM.size:end].decode("ascii")
        except UnicodeDecodeError:
            raise ChannelProtocolError("hand-off peer host is not ASCII") from None
        return Handoff(conn_id, body[end:], (host, port))
    if frame_type == HANDOFF_AS:
        return _decode_handoff_as(body)
    if frame_type == ACK:
        if len(body) < _ACK.size:
            raise ChannelProtocolError(f"ack frame of {len(body)} bytes is too short")
        conn_id, adopted = _ACK.unpack_from(body)
        return Ack(conn_id, adopted == 1, _text(body[_ACK.size:], "ack reason"))
    if frame_type == MESSAGE:
        size = body[0] if body else 0
        if not size or len(body) < 1 + size:
            raise ChannelProtocolError("message frame has no kind")
        kind = _text(body[1:1 + size], "message kind")
        try:
            payload = json.loads(body[1 + size:])
        except ValueError as e:
            raise ChannelProtocolError(f"{kind} message payload is not JSON: {e}") from None
        if not isinstance(payload, dict):
            raise ChannelProtocolError(f"{kind} message payload is not a JSON object")
        return Message(kind, payload)
    if frame_type == FORWARD:
        if len(body) < _FORWARD_FIXED:
            raise ChannelProtocolError(f"forward frame of {len(body)} bytes is too short")
        flags, count = body[0], int.from_bytes(body[1:3], "big")
        start = _FORWARD_FIXED + 2 * count
        if len(body) < start:
            raise ChannelProtocolError(f"forward frame of {len(body)} bytes has no room "
                                       f"for its {count} slots")
        slots = struct.unpack_from(f">{count}H", body, _FORWARD_FIXED)
        return Forward(flags, slots, body[start:])
    raise ChannelProtocolError(f"frame of unknown type {frame_type}")


def _text(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ChannelProtocolError(f"{what} is not UTF-8") from None


class FrameReader:
    """Bytes in, complete ``(type, body)`` frames out, in order.

    ``feed`` returns the frames completed so far; after a header over ``max_body`` it
    returns the frames before it and sets ``error`` (a ChannelProtocolError), and the
    caller closes the channel: nothing after a broken header can be trusted.
    """

    def __init__(self, max_body=MAX_BODY, max_forward_body=MAX_BODY):
        self._max_body = max_body
        self._max_forward_body = max_forward_body
        self._buffer = bytearray()
        self.error = None

    def feed(self, data):
        if self.error is not None:
            return []
        buffer = self._buffer
        buffer += data
        frames, offset, end = [], 0, len(buffer)
        with memoryview(buffer) as view:
            while end - offset >= HEADER.size:
                length, frame_type = HEADER.unpack_from(view, offset)
                limit = self._max_forward_body if frame_type == FORWARD else self._max_body
                if length > limit:
                    self.error = ChannelProtocolError(
                        f"{type_name(frame_type)} frame of {length} bytes exceeds "
                        f"the {limit}-byte limit")
                    break
                stop = offset + HEADER.size + length
                if stop > end:
                    break
                frames.append((frame_type, bytes(view[offset + HEADER.size:stop])))
                offset = stop
        if self.error is not None:
            buffer.clear()
        elif offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self):
        """Bytes of an incomplete frame held."""
        return len(self._buffer)
