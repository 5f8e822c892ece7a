"""A stored message as the body of a FORWARD frame, and the frame's flags. No I/O.

Every field of ``mqttd.store.sink.Message`` goes: the receiving worker delivers it as its
own route would (topic, payload, QoS), retains it (the key orders retained values of one
broker run), and a queued copy is the same message as the row in ``messages`` (key,
client id, username, time). Packed, not JSON: the payload's bytes go as they are, and a
whole encode or decode is one ``struct`` call and a few slices (about 1 us each way).

    u8 qos | u8 bits (1: retain, 2: has a username) | f64 received_at
    | u16 lengths of key, client id, username, topic (UTF-8)
    | key | client id | username | topic | payload (the rest)

``peek`` reads the topic, the key and whether the payload is empty without building a
Message: the master keeps and orders the retained set that way (``mqttd.tree.relay``).

The flags say what the receiver does with it. From a worker to the master, RETAINED
marks a retained set or clear, which the master puts in its order; from the master to
a worker, RETAINED is the topic's retained value in the master's order, which the
worker stores over whatever it holds (its own value applied when it routed the
message is provisional: the master sends it back, or the value it kept instead). A
retained body (its retain bit set) that comes with DELIVER alone is delivered and not
stored: the master keeps a newer message of the same broker run for that topic.
Mixed versions: a worker of this code under an older master (a worker restarted from an
upgraded install before the master was) gets no echo and stores what it gets, as
before; an older worker never runs under this master (it starts its own workers).
"""
import struct

from mqttd.store.sink import Message

__all__ = ["DELIVER", "RETAINED", "MalformedBody", "decode", "encode", "frame_limit",
           "peek"]

DELIVER = 1
"""Flag: deliver it to the subscribers of the worker that gets it (a live publish)."""
RETAINED = 2
"""Flag: a retained publish (set or clear): the master orders it, keeps it for a worker
that starts later, and sends it to every worker, the one it came from too, whose
retained store takes it in the master's order. RETAINED alone (no DELIVER) is a
retained value sent late (after a full channel, to a starting worker) or back to the
worker it came from: stored, not delivered (it is not news to a subscription there)."""

_new_tuple = tuple.__new__  # Message is a NamedTuple: skip its Python __new__ (per message)
_HEAD = struct.Struct(">BBdHHHH")
_RETAIN, _HAS_USERNAME = 1, 2
_MAX_TEXT = 0xFFFF
_SLOTS_ROOM = 3 + 2 * 0xFFFF  # a FORWARD frame's flags, slot count and slots, at most


class MalformedBody(ValueError):
    """A forwarded body that is not a message (a broken peer: the channel is ours)."""


def frame_limit(max_packet_size):
    """The largest FORWARD frame body a message of at most ``max_packet_size`` bytes
    makes: its payload and topic fit the packet; key, client id and username are at
    most 65,535 bytes each; and the frame's slots."""
    return _SLOTS_ROOM + _HEAD.size + max_packet_size + 3 * _MAX_TEXT


def encode(message):
    """The body for ``message``; ValueError for a text over 65,535 UTF-8 bytes."""
    key = message.key.encode("utf-8")
    client_id = message.client_id.encode("utf-8")
    username = message.username
    name = b"" if username is None else username.encode("utf-8")
    topic = message.topic.encode("utf-8")
    bits = (_RETAIN if message.retain else 0) | (0 if username is None else _HAS_USERNAME)
    try:
        head = _HEAD.pack(message.qos, bits, message.received_at, len(key), len(client_id),
                          len(name), len(topic))
    except struct.error:
        raise ValueError(f"message {message.key!r}: a text is over {_MAX_TEXT} bytes") from None
    return b"".join((head, key, client_id, name, topic, message.payload))


def _fields(body):
    if len(body) < _HEAD.size:
        raise MalformedBody(f"forwarded body of {len(body)} bytes is too short")
    head = _HEAD.unpack_from(body)
    end = _HEAD.size + head[3] + head[4] + head[5] + head[6]
    if len(body) < end:
        raise MalformedBody(f"forwarded body of {len(body)} bytes is shorter than its texts")
    return head, end


def peek(body):
    """(topic, key, payload is empty) of a body, without decoding the rest."""
    head, end = _fields(body)
    start = end - head[6]
    key_end = _HEAD.size + head[3]
    return _text(body[start:end]), _text(body[_HEAD.size:key_end]), len(body) == end


def decode(body):
    """The Message a body carries; MalformedBody if it is not one."""
    (qos, bits, received_at, key_len, id_len, name_len, topic_len), end = _fields(body)
    at = _HEAD.size
    texts = []
    for size in (key_len, id_len, name_len, topic_len):
        texts.append(_text(body[at:at + size]))
        at += size
    key, client_id, username, topic = texts
    if qos > 2:
        raise MalformedBody(f"forwarded message {key!r} has QoS {qos}")
    return _new_tuple(Message, (key, client_id, username if bits & _HAS_USERNAME else None,
                                topic, body[end:], qos, bool(bits & _RETAIN), received_at))


def _text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("a forwarded message's text is not UTF-8") from None
