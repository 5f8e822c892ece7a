"""Sans-I/O MQTT 3.1.1 codec: bytes in -> packet objects out, packet objects -> bytes.

No Twisted and no I/O here, so the codec can be unit-tested and fuzzed on its own. The
only exception it raises for bad input is ProtocolError.
"""
from mqttd.codec.encode import (
    DISCONNECT_BYTES,
    PINGREQ_BYTES,
    PINGRESP_BYTES,
    encode,
    encode_connack,
    encode_puback,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_pubrel,
    encode_unsuback,
    remaining_length,
)
from mqttd.codec.errors import ProtocolError
from mqttd.codec.packets import (
    CONNACK,
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNACCEPTABLE_PROTOCOL,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBACK_FAILURE,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from mqttd.codec.parser import DEFAULT_MAX_PACKET_SIZE, Parser, first_packet_size
from mqttd.codec.validate import check_topic_filter, check_topic_name

__all__ = [
    "CONNACK", "CONNACK_ACCEPTED", "CONNACK_BAD_CREDENTIALS", "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_NOT_AUTHORIZED", "CONNACK_SERVER_UNAVAILABLE", "CONNACK_UNACCEPTABLE_PROTOCOL",
    "CONNECT", "DEFAULT_MAX_PACKET_SIZE", "DISCONNECT", "DISCONNECT_BYTES", "PINGREQ",
    "PINGREQ_BYTES", "PINGRESP", "PINGRESP_BYTES", "PUBACK", "PUBCOMP", "PUBLISH", "PUBREC",
    "PUBREL", "SUBACK", "SUBACK_FAILURE", "SUBSCRIBE", "UNSUBACK", "UNSUBSCRIBE",
    "Connack", "Connect", "Disconnect", "Parser", "Pingreq", "Pingresp", "ProtocolError",
    "Puback", "Pubcomp", "Publish", "Pubrec", "Pubrel", "Suback", "Subscribe", "Unsuback",
    "Unsubscribe", "Will", "check_topic_filter", "check_topic_name", "encode",
    "encode_connack", "encode_puback", "encode_pubcomp", "encode_publish", "encode_pubrec",
    "encode_pubrel", "encode_unsuback", "first_packet_size", "remaining_length",
]
