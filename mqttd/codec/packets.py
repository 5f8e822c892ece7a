"""MQTT 3.1.1 control packets as immutable values.

Field names follow the specification. Strings are ``str`` (already UTF-8 validated by
the decoder), binary data (payloads, passwords) is ``bytes``. Encoding lives in ``mqttd.codec.encode``,
decoding in ``mqttd.codec.decode`` and the incremental stream parser in ``mqttd.codec.parser``.
"""
import attrs

# Packet type numbers (high nibble of the fixed header).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

# CONNACK return codes (MQTT 3.1.1 section 3.2.2.3).
CONNACK_ACCEPTED = 0x00
CONNACK_UNACCEPTABLE_PROTOCOL = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02
CONNACK_SERVER_UNAVAILABLE = 0x03
CONNACK_BAD_CREDENTIALS = 0x04
CONNACK_NOT_AUTHORIZED = 0x05

# SUBACK failure return code.
SUBACK_FAILURE = 0x80


@attrs.frozen
class Will:
    """The will message carried in CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@attrs.frozen
class Connect:
    client_id: str
    clean_session: bool = True
    keepalive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4


@attrs.frozen
class Connack:
    session_present: bool = False
    return_code: int = CONNACK_ACCEPTED


@attrs.frozen
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@attrs.frozen
class Puback:
    packet_id: int


@attrs.frozen
class Pubrec:
    packet_id: int


@attrs.frozen
class Pubrel:
    packet_id: int


@attrs.frozen
class Pubcomp:
    packet_id: int


@attrs.frozen
class Subscribe:
    packet_id: int
    # ((topic_filter, requested_qos), ...)
    topics: tuple


@attrs.frozen
class Suback:
    packet_id: int
    # one return code per requested filter: granted QoS 0..2 or SUBACK_FAILURE
    return_codes: tuple


@attrs.frozen
class Unsubscribe:
    packet_id: int
    topics: tuple


@attrs.frozen
class Unsuback:
    packet_id: int


@attrs.frozen
class Pingreq:
    pass


@attrs.frozen
class Pingresp:
    pass


@attrs.frozen
class Disconnect:
    pass
