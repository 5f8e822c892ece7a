"""Packet bodies -> packet objects, with every MQTT 3.1.1 rule that concerns one body.

Each decoder has the signature ``decoder(first_byte, view, start, end)`` and reads the
variable header and payload in ``view[start:end]`` (a memoryview over the chunk being
parsed: no copying until a field becomes ``str``/``bytes``). The framing rules (packet
type, fixed-header flags, direction, PUBLISH QoS/DUP bits, remaining length) were already
checked by the parser before a decoder is called; see ``mqttd.codec.parser``.

Decoders never keep a reference to ``view``: the parser reuses its buffer afterwards.
"""
import struct

import attrs

from mqttd.codec import packets as p
from mqttd.codec.errors import ProtocolError
from mqttd.codec.validate import check_topic_filter, check_topic_name

_u16 = struct.Struct("!H").unpack_from

_PROTOCOLS = {b"MQTT": 4, b"MQIsdp": 3}


def _string(view, pos, end, what):
    """A length-prefixed UTF-8 string without U+0000 [MQTT-1.5.3-1/2]; returns (str, next)."""
    if pos + 2 > end:
        raise ProtocolError(f"{what}: packet ends inside the string length")
    stop = pos + 2 + _u16(view, pos)[0]
    if stop > end:
        raise ProtocolError(f"{what}: string runs past the end of the packet")
    try:
        s = str(view[pos + 2:stop], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not well-formed UTF-8 [MQTT-1.5.3-1]") from None
    if "\x00" in s:
        raise ProtocolError(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    return s, stop


def _binary(view, pos, end, what):
    """A length-prefixed binary field; returns (bytes, next)."""
    if pos + 2 > end:
        raise ProtocolError(f"{what}: packet ends inside the field length")
    stop = pos + 2 + _u16(view, pos)[0]
    if stop > end:
        raise ProtocolError(f"{what}: field runs past the end of the packet")
    return bytes(view[pos + 2:stop]), stop


def _packet_id(view, pos, end, name):
    """A non-zero packet identifier [MQTT-2.3.1-1]."""
    if pos + 2 > end:
        raise ProtocolError(f"{name}: packet ends inside the packet identifier")
    pid = _u16(view, pos)[0]
    if not pid:
        raise ProtocolError(f"{name} packet identifier is 0 [MQTT-2.3.1-1]")
    return pid


def _publish_factory():
    """A constructor ``new(topic, payload, qos, retain, dup, packet_id)`` for Publish.

    Why: attrs' frozen ``__init__`` sets every field through ``object.__setattr__``; once
    per received PUBLISH that was ~2-3 % of the broker's CPU. Setting the slots through
    their member descriptors builds the same value in 20 % less time. That is only the
    same value while Publish is a slotted attrs class with exactly these fields and no
    validator, converter or post-init hook; otherwise this falls back to the class.
    """
    names = ("topic", "payload", "qos", "retain", "dup", "packet_id")
    cls = p.Publish
    try:
        fields = attrs.fields(cls)
        descriptors = [cls.__dict__[name] for name in names]
    except (TypeError, KeyError):
        return cls
    if (tuple(f.name for f in fields) != names
            or any(f.validator is not None or f.converter is not None for f in fields)
            or hasattr(cls, "__attrs_post_init__")
            or not all(type(d) is _MemberDescriptor for d in descriptors)):
        return cls
    set_topic, set_payload, set_qos, set_retain, set_dup, set_id = (
        d.__set__ for d in descriptors)
    new_object = object.__new__

    def new(topic, payload, qos, retain, dup, packet_id):
        packet = new_object(cls)
        set_topic(packet, topic)
        set_payload(packet, payload)
        set_qos(packet, qos)
        set_retain(packet, retain)
        set_dup(packet, dup)
        set_id(packet, packet_id)
        return packet

    return new


_MemberDescriptor = type(type("_Slotted", (), {"__slots__": ("x",)}).x)
_new_publish = _publish_factory()

# Valid topic names by their raw bytes: devices publish to the same few topics over and
# over, so most PUBLISHes skip the UTF-8 decode and the topic checks, and share one
# ``str`` (whose hash the trie then finds cached). Bounded: short topics only, and
# emptied when full (a peer sending endless new topics costs a refill, not memory).
_TOPICS = {}
_TOPICS_MAX = 4096
_TOPIC_CACHE_LEN = 256


def decode_publish(first, view, pos, end):
    """The hot path: one PUBLISH. QoS 3 and DUP-with-QoS-0 were rejected on the first byte."""
    if pos + 2 > end:
        raise ProtocolError("PUBLISH: packet ends inside the topic length")
    stop = pos + 2 + (view[pos] << 8 | view[pos + 1])
    if stop > end:
        raise ProtocolError("PUBLISH: topic runs past the end of the packet")
    raw = view[pos + 2:stop].tobytes()
    topic = _TOPICS.get(raw)
    if topic is None:
        try:
            topic = str(raw, "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                "PUBLISH topic is not well-formed UTF-8 [MQTT-1.5.3-1]") from None
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            check_topic_name(topic, "PUBLISH topic")  # raises with the precise reason
        if len(raw) <= _TOPIC_CACHE_LEN:
            if len(_TOPICS) >= _TOPICS_MAX:
                _TOPICS.clear()
            _TOPICS[raw] = topic
    qos = (first >> 1) & 3
    if qos:
        if stop + 2 > end:
            raise ProtocolError("PUBLISH: packet ends inside the packet identifier")
        pid = view[stop] << 8 | view[stop + 1]
        if not pid:
            raise ProtocolError("PUBLISH packet identifier is 0 [MQTT-2.3.1-1]")
        return _new_publish(topic, view[stop + 2:end].tobytes(), qos, first & 1 == 1,
                            first & 8 == 8, pid)
    return _new_publish(topic, view[stop:end].tobytes(), 0, first & 1 == 1, False, None)


def decode_connect(first, view, pos, end):
    name_end = pos + 2 + _u16(view, pos)[0] if pos + 2 <= end else end + 1
    level = None
    if name_end <= end and name_end - pos <= 8:
        name = bytes(view[pos + 2:name_end])
        level = _PROTOCOLS.get(name)
    if level is None:
        raise ProtocolError("CONNECT protocol name is not 'MQTT' (or 'MQIsdp') [MQTT-3.1.2-1]")
    pos = name_end
    if pos + 4 > end:
        raise ProtocolError("CONNECT: packet ends inside the variable header")
    if view[pos] != level:
        raise ProtocolError(
            f"CONNECT protocol level {view[pos]} unsupported for {name.decode()} [MQTT-3.1.2-2]",
            connack_code=p.CONNACK_UNACCEPTABLE_PROTOCOL)
    flags = view[pos + 1]
    keepalive = _u16(view, pos + 2)[0]
    pos += 4
    if flags & 0x01:
        raise ProtocolError("CONNECT reserved flag is not 0 [MQTT-3.1.2-3]")
    will_qos = (flags >> 3) & 3
    if not flags & 0x04:
        if will_qos:
            raise ProtocolError("CONNECT will QoS is not 0 without will flag [MQTT-3.1.2-13]")
        if flags & 0x20:
            raise ProtocolError(
                "CONNECT will retain is not 0 without will flag [MQTT-3.1.2-15]")
    elif will_qos == 3:
        raise ProtocolError("CONNECT will QoS is 3 [MQTT-3.1.2-14]")
    if flags & 0x40 and not flags & 0x80:
        raise ProtocolError("CONNECT password flag without user name flag [MQTT-3.1.2-22]")
    clean = bool(flags & 0x02)

    client_id, pos = _string(view, pos, end, "CONNECT client identifier")
    if not client_id:
        if level == 3:
            raise ProtocolError("MQTT 3.1 CONNECT with empty client identifier",
                                connack_code=p.CONNACK_IDENTIFIER_REJECTED)
        if not clean:
            raise ProtocolError(
                "CONNECT empty client identifier with clean session 0 [MQTT-3.1.3-8]",
                connack_code=p.CONNACK_IDENTIFIER_REJECTED)
    will = username = password = None
    if flags & 0x04:
        will_topic, pos = _string(view, pos, end, "CONNECT will topic")
        check_topic_name(will_topic, "CONNECT will topic")
        will_payload, pos = _binary(view, pos, end, "CONNECT will message")
        will = p.Will(will_topic, will_payload, will_qos, bool(flags & 0x20))
    if flags & 0x80:
        username, pos = _string(view, pos, end, "CONNECT user name")
    if flags & 0x40:
        password, pos = _binary(view, pos, end, "CONNECT password")
    if pos != end:
        raise ProtocolError("CONNECT has bytes beyond the fields its flags announce")
    return p.Connect(client_id, clean, keepalive, username, password, will,
                     name.decode(), level)


def decode_connack(first, view, pos, end):
    ack_flags, code = view[pos], view[pos + 1]
    if ack_flags & 0xFE:
        raise ProtocolError("CONNACK reserved acknowledge flags are not 0 [MQTT-3.2.2-1]")
    if code > p.CONNACK_NOT_AUTHORIZED:
        raise ProtocolError(f"CONNACK return code {code} is reserved")
    if code and ack_flags:
        raise ProtocolError("CONNACK session present with a non-zero return code [MQTT-3.2.2-4]")
    return p.Connack(bool(ack_flags), code)


def _ack_decoder(cls):
    name = cls.__name__.upper()

    def decode_ack(first, view, pos, end):
        return cls(_packet_id(view, pos, end, name))
    decode_ack.__doc__ = f"{name}: a non-zero packet identifier and nothing else."
    return decode_ack


def decode_subscribe(first, view, pos, end):
    pid = _packet_id(view, pos, end, "SUBSCRIBE")
    pos += 2
    if pos == end:
        raise ProtocolError("SUBSCRIBE without a topic filter [MQTT-3.8.3-3]")
    topics = []
    while pos < end:
        topic_filter, pos = _string(view, pos, end, "SUBSCRIBE topic filter")
        check_topic_filter(topic_filter, "SUBSCRIBE topic filter")
        if pos == end:
            raise ProtocolError("SUBSCRIBE: packet ends before the requested QoS")
        qos = view[pos]
        if qos > 2:
            raise ProtocolError(
                f"SUBSCRIBE requested QoS byte {qos:#04x} is invalid [MQTT-3.8.3-4]")
        topics.append((topic_filter, qos))
        pos += 1
    return p.Subscribe(pid, tuple(topics))


def decode_unsubscribe(first, view, pos, end):
    pid = _packet_id(view, pos, end, "UNSUBSCRIBE")
    pos += 2
    if pos == end:
        raise ProtocolError("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
    topics = []
    while pos < end:
        topic_filter, pos = _string(view, pos, end, "UNSUBSCRIBE topic filter")
        check_topic_filter(topic_filter, "UNSUBSCRIBE topic filter")
        topics.append(topic_filter)
    return p.Unsubscribe(pid, tuple(topics))


_SUBACK_CODES = frozenset((0, 1, 2, p.SUBACK_FAILURE))


def decode_suback(first, view, pos, end):
    pid = _packet_id(view, pos, end, "SUBACK")
    codes = tuple(view[pos + 2:end])
    if not codes:
        raise ProtocolError("SUBACK without a return code [MQTT-3.9.3-1]")
    if not _SUBACK_CODES.issuperset(codes):
        raise ProtocolError("SUBACK return code is not 0, 1, 2 or 0x80 [MQTT-3.9.3-2]")
    return p.Suback(pid, codes)


_PINGREQ = p.Pingreq()
_PINGRESP = p.Pingresp()
_DISCONNECT = p.Disconnect()

# Indexed by packet type (high nibble of the first byte); None for reserved types 0, 15.
DECODERS = (
    None,
    decode_connect,
    decode_connack,
    decode_publish,
    _ack_decoder(p.Puback),
    _ack_decoder(p.Pubrec),
    _ack_decoder(p.Pubrel),
    _ack_decoder(p.Pubcomp),
    decode_subscribe,
    decode_suback,
    decode_unsubscribe,
    _ack_decoder(p.Unsuback),
    lambda first, view, pos, end: _PINGREQ,
    lambda first, view, pos, end: _PINGRESP,
    lambda first, view, pos, end: _DISCONNECT,
    None,
)

# Exact remaining length for types whose body has a fixed size (-1: variable).
FIXED_LENGTH = (-1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1)
