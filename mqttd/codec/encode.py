"""Packet objects -> wire bytes.

``encode(packet)`` handles every type through one dict lookup on the class. The broker's
hot path skips packet objects altogether: ``encode_publish`` builds a PUBLISH straight
from its fields (the topic may already be UTF-8 bytes, e.g. cached per subscription) and
the acknowledgements are one precompiled ``struct`` call each.

Encoding trusts its input: it is the broker's own output, so it does not re-run the
decoder's protocol checks. Values that cannot be represented at all raise rather than
produce garbage: ValueError for a string over 65535 bytes or a packet over 256 MiB,
struct.error for a packet identifier outside 0..65535.
"""
import struct

from mqttd.codec import packets as p

_ACK = struct.Struct("!BBH")
_U16 = struct.Struct("!H")
_HDR_U16 = struct.Struct("!BBH")          # fixed header with a 1-byte remaining length + u16

PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"
DISCONNECT_BYTES = b"\xe0\x00"

_BYTE = tuple(bytes((i,)) for i in range(256))


def encode_puback(packet_id):
    """PUBACK for ``packet_id``: the one packet sent per QoS 1 message."""
    return _ACK.pack(0x40, 2, packet_id)


def encode_pubrec(packet_id):
    return _ACK.pack(0x50, 2, packet_id)


def encode_pubrel(packet_id):
    return _ACK.pack(0x62, 2, packet_id)


def encode_pubcomp(packet_id):
    return _ACK.pack(0x70, 2, packet_id)


def encode_unsuback(packet_id):
    return _ACK.pack(0xB0, 2, packet_id)


def encode_connack(session_present=False, return_code=p.CONNACK_ACCEPTED):
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def remaining_length(n):
    """The variable-length "remaining length" field (1 to 4 bytes, MQTT 2.2.3)."""
    if n < 0x80:
        if n < 0:
            raise ValueError(f"negative remaining length {n}")
        return _BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, (n >> 14) & 0x7F | 0x80, n >> 21))
    raise ValueError(f"remaining length {n} exceeds 268435455 bytes")


def _frame(first_byte, body):
    return _BYTE[first_byte] + remaining_length(len(body)) + body


def _u16_bytes(data):
    """A length-prefixed binary field (also used for UTF-8 strings once encoded)."""
    if len(data) > 0xFFFF:
        raise ValueError(f"field of {len(data)} bytes exceeds 65535")
    return _U16.pack(len(data)) + data


def _string(s):
    return _u16_bytes(s.encode("utf-8"))


def encode_publish(topic, payload, qos=0, retain=False, dup=False, packet_id=None):
    """One PUBLISH on the wire; ``topic`` is ``str`` or already-encoded UTF-8 ``bytes``.

    ``packet_id`` is written only for QoS 1 and 2.
    """
    if type(topic) is str:
        topic = topic.encode("utf-8")
    tlen = len(topic)
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    if qos:
        rlen = tlen + 4 + len(payload)
        if rlen < 0x80:
            return _HDR_U16.pack(first, rlen, tlen) + topic + _U16.pack(packet_id) + payload
        return (_BYTE[first] + remaining_length(rlen) + _U16.pack(tlen) + topic
                + _U16.pack(packet_id) + payload)
    rlen = tlen + 2 + len(payload)
    if rlen < 0x80:
        return _HDR_U16.pack(first, rlen, tlen) + topic + payload
    return _BYTE[first] + remaining_length(rlen) + _U16.pack(tlen) + topic + payload


def _encode_connect(c):
    flags = 0x02 if c.clean_session else 0
    parts = [_string(c.protocol_name), _BYTE[c.protocol_level], b"", _U16.pack(c.keepalive),
             _string(c.client_id)]
    if c.will is not None:
        flags |= 0x04 | (c.will.qos << 3) | (0x20 if c.will.retain else 0)
        parts.append(_string(c.will.topic))
        parts.append(_u16_bytes(c.will.payload))
    if c.username is not None:
        flags |= 0x80
        parts.append(_string(c.username))
    if c.password is not None:
        flags |= 0x40
        parts.append(_u16_bytes(c.password))
    parts[2] = _BYTE[flags]
    return _frame(0x10, b"".join(parts))


def _encode_subscribe(s):
    body = b"".join([_U16.pack(s.packet_id)]
                    + [_string(f) + _BYTE[q] for f, q in s.topics])
    return _frame(0x82, body)


def _encode_unsubscribe(u):
    return _frame(0xA2, b"".join([_U16.pack(u.packet_id)] + [_string(f) for f in u.topics]))


def _encode_suback(s):
    return _frame(0x90, _U16.pack(s.packet_id) + bytes(s.return_codes))


_ENCODERS = {
    p.Connect: _encode_connect,
    p.Connack: lambda c: encode_connack(c.session_present, c.return_code),
    p.Publish: lambda m: encode_publish(m.topic, m.payload, m.qos, m.retain, m.dup, m.packet_id),
    p.Puback: lambda a: encode_puback(a.packet_id),
    p.Pubrec: lambda a: encode_pubrec(a.packet_id),
    p.Pubrel: lambda a: encode_pubrel(a.packet_id),
    p.Pubcomp: lambda a: encode_pubcomp(a.packet_id),
    p.Subscribe: _encode_subscribe,
    p.Suback: _encode_suback,
    p.Unsubscribe: _encode_unsubscribe,
    p.Unsuback: lambda a: encode_unsuback(a.packet_id),
    p.Pingreq: lambda _: PINGREQ_BYTES,
    p.Pingresp: lambda _: PINGRESP_BYTES,
    p.Disconnect: lambda _: DISCONNECT_BYTES,
}


def encode(packet):
    """Wire bytes for any packet object from ``mqttd.codec.packets``."""
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet)
