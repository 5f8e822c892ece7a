"""Example-based tests of the MQTT 3.1.1 codec: round trips, framing, every rejected case."""
import struct

from twisted.trial import unittest

from mqttd.codec import (
    PINGRESP_BYTES,
    Connack,
    Connect,
    Disconnect,
    Parser,
    Pingreq,
    Pingresp,
    ProtocolError,
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
    check_topic_filter,
    check_topic_name,
    encode,
    encode_connack,
    encode_puback,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_pubrel,
    remaining_length,
)
from mqttd.codec import decode

CONNECT_BYTES = encode(Connect("c1"))


def u16(n):
    return struct.pack("!H", n)


def s(data):
    """A length-prefixed field; ``str`` is UTF-8 encoded first."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return u16(len(data)) + data


def frame(first, body):
    return bytes((first,)) + remaining_length(len(body)) + body


def connect_body(flags=0x02, client_id="c1", name=b"MQTT", level=4, payload=None):
    if payload is None:
        payload = s(client_id)
    return s(name) + bytes((level, flags)) + u16(60) + payload


def server_parse(data, max_packet_size=1048576):
    """What a broker parses from a client that already sent its CONNECT."""
    return Parser(max_packet_size).feed(CONNECT_BYTES + data)[1:]


def client_parse(data, max_packet_size=1048576):
    return Parser(max_packet_size, server=False).feed(data)


class RemainingLengthTests(unittest.TestCase):
    def test_spec_boundaries(self):
        """The encodings from the table in MQTT 3.1.1 section 2.2.3."""
        cases = {0: b"\x00", 127: b"\x7f", 128: b"\x80\x01", 16383: b"\xff\x7f",
                 16384: b"\x80\x80\x01", 2097151: b"\xff\xff\x7f",
                 2097152: b"\x80\x80\x80\x01", 268435455: b"\xff\xff\xff\x7f"}
        for n, wire in cases.items():
            self.assertEqual(remaining_length(n), wire, n)

    def test_too_long(self):
        self.assertRaises(ValueError, remaining_length, 268435456)


class RoundTripTests(unittest.TestCase):
    def assertServerRoundTrip(self, packet):
        self.assertEqual(server_parse(encode(packet)), [packet])

    def assertClientRoundTrip(self, packet):
        self.assertEqual(client_parse(encode(packet)), [packet])

    def test_connect_variants(self):
        for packet in [
            Connect("c1"),
            Connect("", clean_session=True, keepalive=65535),
            Connect("dev-ü", clean_session=False, keepalive=30),
            Connect("c", username="alice"),
            Connect("c", username="", password=b""),
            Connect("c", username="alice", password=b"\x00\xffsecret"),
            Connect("c", will=Will("last/will", b"\x00\x01\xfe\xff", 2, True)),
            Connect("c", will=Will("w", b"", 0, False), username="u", password=b"p"),
            Connect("old-device", protocol_name="MQIsdp", protocol_level=3),
        ]:
            self.assertEqual(Parser().feed(encode(packet)), [packet])

    def test_connect_wire_format(self):
        """Byte-exact against the example in MQTT 3.1.1 section 3.1.2.10."""
        wire = encode(Connect("c1", keepalive=10, username="u", password=b"p"))
        self.assertEqual(wire, b"\x10\x14\x00\x04MQTT\x04\xc2\x00\x0a\x00\x02c1\x00\x01u\x00\x01p")

    def test_connack(self):
        for packet in [Connack(), Connack(True, 0), Connack(False, 5), Connack(False, 2)]:
            self.assertClientRoundTrip(packet)
        self.assertEqual(encode(Connack(True, 0)), b"\x20\x02\x01\x00")
        self.assertEqual(encode_connack(False, 4), b"\x20\x02\x00\x04")

    def test_publish_variants(self):
        for packet in [
            Publish("a", b"", 0),
            Publish("a/b/c", b"hello", 0, retain=True),
            Publish("/", b"x", 1, packet_id=1),
            Publish("t", b"\x00" * 10, 1, dup=True, packet_id=65535),
            Publish("température/ü/€", b"", 2, retain=True, dup=True, packet_id=42),
            Publish("t", b"", 2, packet_id=7),
        ]:
            self.assertServerRoundTrip(packet)
            self.assertClientRoundTrip(packet)

    def test_publish_remaining_length_boundaries(self):
        """Packets whose remaining length sits on each varint size boundary."""
        topic = "t/x"
        overhead = 2 + len(topic) + 2
        for rl, header in [(127, 2), (128, 3), (16383, 3), (16384, 4),
                           (2097151, 4), (2097152, 5)]:
            packet = Publish(topic, b"\xab" * (rl - overhead), 1, packet_id=9)
            wire = encode(packet)
            self.assertEqual(len(wire), rl + header, rl)
            parser = Parser(max_packet_size=rl + header, server=False)
            got = []
            for i in range(0, len(wire), 65536):
                got += parser.feed(wire[i:i + 65536])
            self.assertEqual(got, [packet], rl)
            self.assertEqual(parser.buffered, 0)

    def test_encode_publish_matches_encode(self):
        packet = Publish("a/ü", b"payload", 1, True, True, 300)
        self.assertEqual(encode_publish("a/ü", b"payload", 1, True, True, 300), encode(packet))
        self.assertEqual(encode_publish("a/ü".encode(), b"payload", 1, True, True, 300),
                         encode(packet))
        # QoS 0 carries no packet identifier even if one is passed
        self.assertEqual(encode_publish("t", b"p", 0, False, False, 5), b"\x30\x04\x00\x01tp")

    def test_acks(self):
        for cls in (Puback, Pubrec, Pubrel, Pubcomp):
            for pid in (1, 0x1234, 65535):
                self.assertServerRoundTrip(cls(pid))
                self.assertClientRoundTrip(cls(pid))
        self.assertEqual(encode_puback(7), b"\x40\x02\x00\x07")
        self.assertEqual(encode_pubrec(7), b"\x50\x02\x00\x07")
        self.assertEqual(encode_pubrel(7), b"\x62\x02\x00\x07")
        self.assertEqual(encode_pubcomp(7), b"\x70\x02\x00\x07")

    def test_subscribe_family(self):
        self.assertServerRoundTrip(Subscribe(1, (("a/+/c", 0), ("#", 1), ("ü/€", 2))))
        self.assertServerRoundTrip(Subscribe(65535, (("+", 2),)))
        self.assertServerRoundTrip(Unsubscribe(5, ("a/#", "b")))
        self.assertClientRoundTrip(Suback(1, (0, 1, 2, 0x80)))
        self.assertClientRoundTrip(Unsuback(65535))

    def test_empty_packets(self):
        self.assertEqual(encode(Pingreq()), b"\xc0\x00")
        self.assertEqual(encode(Pingresp()), PINGRESP_BYTES)
        self.assertEqual(PINGRESP_BYTES, b"\xd0\x00")
        self.assertEqual(encode(Disconnect()), b"\xe0\x00")
        self.assertServerRoundTrip(Pingreq())
        self.assertServerRoundTrip(Disconnect())
        self.assertClientRoundTrip(Pingresp())

    def test_encode_rejects_non_packets(self):
        self.assertRaises(TypeError, encode, "PUBLISH")


SERVER_STREAM = b"".join(encode(packet) for packet in [
    Connect("dev", will=Will("w", b"\x00bin", 1, False), username="u"),
    Publish("a/b", b"x" * 300, 1, packet_id=1),
    Pingreq(),
    Publish("a/b", b"", 0),
    Subscribe(2, (("a/#", 1),)),
    Puback(3), Pubrec(4), Pubrel(5), Pubcomp(6),
    Publish("q2", b"y" * 20000, 2, packet_id=7),
    Unsubscribe(8, ("a/#",)),
    Pingreq(), Pingreq(),
    Disconnect(),
])


class StreamingTests(unittest.TestCase):
    def test_byte_by_byte_equals_coalesced(self):
        whole = Parser().feed(SERVER_STREAM)
        self.assertEqual(len(whole), 14)
        parser = Parser()
        one_by_one = []
        for i in range(len(SERVER_STREAM)):
            one_by_one += parser.feed(SERVER_STREAM[i:i + 1])
        self.assertEqual(one_by_one, whole)
        self.assertEqual(parser.buffered, 0)

    def test_every_fixed_chunk_size(self):
        whole = Parser().feed(SERVER_STREAM)
        for size in list(range(2, 20)) + [127, 128, 129, 4096, 65536]:
            parser = Parser()
            got = []
            for i in range(0, len(SERVER_STREAM), size):
                got += parser.feed(SERVER_STREAM[i:i + size])
            self.assertEqual(got, whole, size)

    def test_pending_header_then_many_small_packets(self):
        """Bytes taken to finish a pending header may already hold further packets."""
        parser = Parser()
        self.assertEqual(parser.feed(CONNECT_BYTES + b"\xc0"), [Connect("c1")])
        self.assertEqual(parser.buffered, 1)
        got = parser.feed(b"\x00\xc0\x00\xc0\x00\x40\x02\x00")
        self.assertEqual(got, [Pingreq(), Pingreq(), Pingreq()])
        self.assertEqual(parser.buffered, 3)
        self.assertEqual(parser.feed(b"\x01\xe0\x00"), [Puback(1), Disconnect()])
        self.assertEqual(parser.buffered, 0)

    def test_partial_packet_is_buffered(self):
        wire = encode(Publish("t", b"abcdef", 1, packet_id=2))
        parser = Parser(server=False)
        self.assertEqual(parser.feed(wire[:5]), [])
        self.assertEqual(parser.buffered, 5)
        self.assertEqual(parser.feed(wire[5:] + wire[:1]), [Publish("t", b"abcdef", 1,
                                                                    packet_id=2)])
        self.assertEqual(parser.buffered, 1)

    def test_accepts_bytearray_and_memoryview(self):
        self.assertEqual(Parser().feed(bytearray(CONNECT_BYTES)), [Connect("c1")])
        self.assertEqual(Parser().feed(memoryview(CONNECT_BYTES)), [Connect("c1")])

    def test_packet_of_exactly_max_size_accepted(self):
        wire = encode(Publish("t", b"z" * 95, 0))
        self.assertEqual(len(wire), 100)
        self.assertEqual(len(client_parse(wire, max_packet_size=100)), 1)
        self.assertRaises(ProtocolError, client_parse, wire, max_packet_size=99)


class MaxPacketSizeTests(unittest.TestCase):
    def test_rejected_on_header_alone(self):
        parser = Parser(max_packet_size=1000)
        parser.feed(CONNECT_BYTES)
        # PUBLISH announcing 2000 bytes: the header is all that arrives.
        e = self.assertRaises(ProtocolError, parser.feed, b"\x30" + remaining_length(2000))
        self.assertIn("exceeds max_packet_size 1000", e.reason)
        self.assertEqual(parser.buffered, 0)

    def test_rejected_when_header_completes_across_feeds(self):
        parser = Parser(max_packet_size=100, server=False)
        self.assertEqual(parser.feed(b"\x30"), [])
        self.assertEqual(parser.feed(b"\x80"), [])
        self.assertRaises(ProtocolError, parser.feed, b"\x01")   # 128 + 3 > 100

    def test_whole_packet_counts_not_just_body(self):
        """A remaining length of max-1 still means a packet of max+1 bytes."""
        self.assertRaises(ProtocolError, Parser(max_packet_size=100, server=False).feed,
                          b"\x30\x63")

    def test_buffer_bounded(self):
        wire = encode(Publish("t", b"q" * 5000, 0))
        parser = Parser(max_packet_size=len(wire), server=False)
        for i in range(0, len(wire) - 1, 333):
            parser.feed(wire[i:min(i + 333, len(wire) - 1)])
            self.assertLessEqual(parser.buffered, len(wire))
        self.assertEqual(parser.buffered, len(wire) - 1)

    def test_invalid_max(self):
        self.assertRaises(ValueError, Parser, 1)


class DeadParserTests(unittest.TestCase):
    def test_error_is_final(self):
        parser = Parser()
        self.assertRaises(ProtocolError, parser.feed, b"\x30\x00")
        self.assertIsNotNone(parser.failed)
        e = self.assertRaises(ProtocolError, parser.feed, CONNECT_BYTES)
        self.assertIn("already failed", e.reason)
        self.assertIn("CONNECT", e.reason)


class MalformedTests(unittest.TestCase):
    def assertServerRejects(self, data, fragment, connack_code=None, connected=True):
        """``data`` makes a server-side parser raise naming ``fragment``, in any chunking."""
        prefix = CONNECT_BYTES if connected else b""
        e = self.assertRaises(ProtocolError, Parser().feed, prefix + data)
        self.assertIn(fragment, e.reason)
        self.assertEqual(e.connack_code, connack_code)
        parser = Parser()
        stream = prefix + data
        with self.assertRaises(ProtocolError) as cm:
            for i in range(len(stream)):
                parser.feed(stream[i:i + 1])
        self.assertIn(fragment, cm.exception.reason)

    def assertClientRejects(self, data, fragment):
        e = self.assertRaises(ProtocolError, client_parse, data)
        self.assertIn(fragment, e.reason)

    def test_reserved_packet_types(self):
        self.assertServerRejects(b"\x00\x00", "type 0 is reserved")
        self.assertServerRejects(b"\xf0\x00", "type 15 is reserved")
        self.assertClientRejects(b"\x00\x00", "type 0 is reserved")
        self.assertClientRejects(b"\xf0\x00", "type 15 is reserved")

    def test_fixed_header_flags(self):
        for first in (0x60, 0x63, 0x80, 0x81, 0xA0, 0xA3, 0x41, 0x52, 0x71, 0xC1, 0xE8, 0x12):
            self.assertServerRejects(bytes((first, 2, 0, 1)), "flags", connected=first != 0x12)
        for first in (0x21, 0x92, 0xB2, 0xD1):
            self.assertClientRejects(bytes((first, 2, 0, 1)), "flags")

    def test_remaining_length_longer_than_four_bytes(self):
        self.assertServerRejects(b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes")

    def test_exact_remaining_lengths(self):
        self.assertServerRejects(b"\x40\x03\x00\x01\x00", "PUBACK remaining length is 3")
        self.assertServerRejects(b"\x62\x01\x00", "PUBREL remaining length is 1, must be 2")
        self.assertServerRejects(b"\xc0\x01\x00", "PINGREQ remaining length is 1")
        self.assertServerRejects(b"\xe0\x01\x00", "DISCONNECT remaining length")
        self.assertClientRejects(b"\x20\x03\x00\x00\x00", "CONNACK remaining length")
        self.assertClientRejects(b"\xb0\x01\x00", "UNSUBACK remaining length")
        self.assertClientRejects(b"\xd0\x01\x00", "PINGRESP remaining length")

    # -- direction and order -------------------------------------------------------

    def test_first_packet_must_be_connect(self):
        self.assertServerRejects(encode(Pingreq()), "first packet is PINGREQ, not CONNECT",
                                 connected=False)
        self.assertServerRejects(encode(Publish("t", b"")), "[MQTT-3.1.0-1]", connected=False)

    def test_second_connect(self):
        self.assertServerRejects(CONNECT_BYTES, "second CONNECT on one connection [MQTT-3.1.0-2]")

    def test_server_to_client_types_rejected_by_server(self):
        for packet in (Connack(), Suback(1, (0,)), Unsuback(1), Pingresp()):
            self.assertServerRejects(encode(packet), "may not be sent by a client")

    def test_client_to_server_types_rejected_by_client(self):
        for packet in (Connect("c"), Subscribe(1, (("a", 0),)), Unsubscribe(1, ("a",)),
                       Pingreq(), Disconnect()):
            self.assertClientRejects(encode(packet), "may not be sent by a server")

    # -- PUBLISH ---------------------------------------------------------------------

    def test_publish_qos3(self):
        self.assertServerRejects(b"\x36\x05\x00\x01t\x00\x01", "QoS is 3 [MQTT-3.3.1-4]")

    def test_publish_dup_with_qos0(self):
        self.assertServerRejects(b"\x38\x03\x00\x01t", "DUP flag set with QoS 0 [MQTT-3.3.1-2]")

    def test_publish_topic_rules(self):
        for topic, fragment in [("a/+", "wildcard [MQTT-3.3.2-2]"),
                                ("#", "wildcard [MQTT-3.3.2-2]"),
                                ("", "is empty"),
                                ("a\x00b", "U+0000")]:
            self.assertServerRejects(frame(0x30, s(topic) + b"payload"), fragment)

    def test_publish_topic_not_utf8(self):
        for raw in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"a\xe2\x82"):
            self.assertServerRejects(frame(0x30, s(raw)), "not well-formed UTF-8 [MQTT-1.5.3-1]")

    def test_publish_packet_id(self):
        self.assertServerRejects(frame(0x32, s("t") + u16(0)), "identifier is 0 [MQTT-2.3.1-1]")
        self.assertServerRejects(frame(0x34, s("t") + b"\x01"), "inside the packet identifier")

    def test_publish_truncated_topic(self):
        self.assertServerRejects(frame(0x30, b"\x00"), "inside the topic length")
        self.assertServerRejects(frame(0x30, u16(10) + b"abc"), "topic runs past the end")

    def test_publish_length_does_not_read_into_next_packet(self):
        # The topic length points past this packet into the following PINGREQ.
        self.assertServerRejects(frame(0x30, u16(3) + b"a") + b"\xc0\x00", "past the end")

    # -- CONNECT ---------------------------------------------------------------------

    def test_connect_bad_protocol_name(self):
        for name in (b"MQTX", b"mqtt", b"MQIsdpX", b"", b"MQ"):
            self.assertServerRejects(frame(0x10, connect_body(name=name)),
                                     "[MQTT-3.1.2-1]", connected=False)
        self.assertServerRejects(b"\x10\x01\x00", "[MQTT-3.1.2-1]", connected=False)

    def test_connect_bad_protocol_level(self):
        for name, level in ((b"MQTT", 3), (b"MQTT", 5), (b"MQIsdp", 4), (b"MQTT", 0)):
            self.assertServerRejects(frame(0x10, connect_body(name=name, level=level)),
                                     "[MQTT-3.1.2-2]", connack_code=0x01, connected=False)

    def assertConnectRejects(self, body, fragment, connack_code=None):
        self.assertServerRejects(frame(0x10, body), fragment, connack_code, connected=False)

    def test_connect_flags(self):
        self.assertConnectRejects(connect_body(flags=0x03), "reserved flag is not 0 [MQTT-3.1.2-3]")
        self.assertConnectRejects(connect_body(flags=0x0A), "[MQTT-3.1.2-13]")
        self.assertConnectRejects(connect_body(flags=0x12), "[MQTT-3.1.2-13]")
        self.assertConnectRejects(connect_body(flags=0x22), "[MQTT-3.1.2-15]")
        self.assertConnectRejects(
            connect_body(flags=0x1E, payload=s("c") + s("w") + s(b"")), "QoS is 3 [MQTT-3.1.2-14]")
        self.assertConnectRejects(connect_body(flags=0x42, payload=s("c") + s(b"pw")),
                                  "[MQTT-3.1.2-22]")

    def test_connect_client_identifier(self):
        self.assertConnectRejects(connect_body(flags=0x00, client_id=""), "[MQTT-3.1.3-8]",
                                  connack_code=0x02)
        self.assertConnectRejects(connect_body(client_id="a\x00"), "U+0000 [MQTT-1.5.3-2]")
        self.assertConnectRejects(connect_body(payload=s(b"\xed\xbf\xbf")), "UTF-8")
        self.assertConnectRejects(
            connect_body(name=b"MQIsdp", level=3, client_id=""), "MQTT 3.1", connack_code=0x02)

    def test_connect_payload_exactly_per_flags(self):
        # will flag, but no will fields
        self.assertConnectRejects(connect_body(flags=0x06), "CONNECT will topic")
        # will topic but no will message
        self.assertConnectRejects(connect_body(flags=0x06, payload=s("c") + s("w")),
                                  "CONNECT will message")
        # user name flag but nothing follows
        self.assertConnectRejects(connect_body(flags=0x82), "CONNECT user name")
        # password flag, user name present, password missing
        self.assertConnectRejects(connect_body(flags=0xC2, payload=s("c") + s("u")),
                                  "CONNECT password")
        # a user name that the flags do not announce
        self.assertConnectRejects(connect_body(payload=s("c") + s("u")), "beyond the fields")
        # password field that overruns the packet
        self.assertConnectRejects(connect_body(flags=0xC2, payload=s("c") + s("u") + u16(9)),
                                  "CONNECT password: field runs past")
        self.assertConnectRejects(connect_body()[:-1], "client identifier")
        self.assertConnectRejects(s(b"MQTT") + b"\x04\x02", "inside the variable header")

    def test_connect_will_topic_rules(self):
        for topic, fragment in (("a/#", "will topic contains wildcard"),
                                ("", "will topic is empty"),
                                ("a\x00", "will topic contains U+0000")):
            self.assertConnectRejects(
                connect_body(flags=0x06, payload=s("c") + s(topic) + s(b"m")), fragment)

    # -- CONNACK ---------------------------------------------------------------------

    def test_connack_rules(self):
        self.assertClientRejects(b"\x20\x02\x02\x00", "[MQTT-3.2.2-1]")
        self.assertClientRejects(b"\x20\x02\x80\x00", "[MQTT-3.2.2-1]")
        self.assertClientRejects(b"\x20\x02\x00\x06", "return code 6 is reserved")
        self.assertClientRejects(b"\x20\x02\x01\x05", "[MQTT-3.2.2-4]")

    # -- SUBSCRIBE / UNSUBSCRIBE / SUBACK ---------------------------------------------

    def test_subscribe_rules(self):
        self.assertServerRejects(frame(0x82, u16(0) + s("a") + b"\x00"),
                                 "SUBSCRIBE packet identifier is 0")
        self.assertServerRejects(frame(0x82, u16(1)), "without a topic filter [MQTT-3.8.3-3]")
        self.assertServerRejects(frame(0x82, u16(1) + s("a") + b"\x03"), "[MQTT-3.8.3-4]")
        self.assertServerRejects(frame(0x82, u16(1) + s("a") + b"\x41"), "[MQTT-3.8.3-4]")
        self.assertServerRejects(frame(0x82, u16(1) + s("a")), "before the requested QoS")
        self.assertServerRejects(frame(0x82, u16(1) + s("a") + b"\x00" + s("a/#/b") + b"\x00"),
                                 "[MQTT-4.7.1-2]")
        self.assertServerRejects(frame(0x82, u16(1) + s("a+") + b"\x00"), "[MQTT-4.7.1-3]")
        self.assertServerRejects(frame(0x82, u16(1) + s("") + b"\x00"), "is empty")
        self.assertServerRejects(frame(0x82, b"\x00"), "inside the packet identifier")

    def test_unsubscribe_rules(self):
        self.assertServerRejects(frame(0xA2, u16(1)), "without a topic filter [MQTT-3.10.3-2]")
        self.assertServerRejects(frame(0xA2, u16(0) + s("a")), "identifier is 0")
        self.assertServerRejects(frame(0xA2, u16(1) + s("#/a")), "[MQTT-4.7.1-2]")
        self.assertServerRejects(frame(0xA2, u16(1) + s("a") + b"\x00"), "inside the string")

    def test_suback_rules(self):
        self.assertClientRejects(frame(0x90, u16(1) + b"\x00\x03"), "[MQTT-3.9.3-2]")
        self.assertClientRejects(frame(0x90, u16(1) + b"\x81"), "[MQTT-3.9.3-2]")
        self.assertClientRejects(frame(0x90, u16(1)), "without a return code")
        self.assertClientRejects(frame(0x90, u16(0) + b"\x00"), "SUBACK packet identifier is 0")

    def test_ack_packet_id_zero(self):
        for first, name in ((0x40, "PUBACK"), (0x50, "PUBREC"), (0x62, "PUBREL"),
                            (0x70, "PUBCOMP")):
            self.assertServerRejects(bytes((first, 2, 0, 0)), f"{name} packet identifier is 0")
        self.assertClientRejects(b"\xb0\x02\x00\x00", "UNSUBACK packet identifier is 0")


class TopicValidationTests(unittest.TestCase):
    def test_valid_names(self):
        for name in ("a", "/", "a/b/c", "/a/", "ü€/𝄞", "$SYS/x", " "):
            check_topic_name(name)

    def test_invalid_names(self):
        for name, fragment in (("", "empty"), ("a/+", "wildcard"), ("a#", "wildcard"),
                               ("+", "wildcard"), ("a\x00", "U+0000"),
                               ("é" * 32768, "65535")):
            e = self.assertRaises(ProtocolError, check_topic_name, name)
            self.assertIn(fragment, e.reason)
        check_topic_name("é" * 32767)  # 65534 bytes: fine

    def test_valid_filters(self):
        for f in ("#", "+", "/", "+/+", "a/+/b", "a/#", "/#", "+/#", "a//b", "sport/+",
                  "/+", "a" * 65535):
            check_topic_filter(f)

    def test_invalid_filters(self):
        for f, fragment in (("", "empty"), ("a#", "[MQTT-4.7.1-2]"), ("#/a", "[MQTT-4.7.1-2]"),
                            ("a/#/", "[MQTT-4.7.1-2]"), ("##", "[MQTT-4.7.1-2]"),
                            ("a+", "[MQTT-4.7.1-3]"), ("+a/b", "[MQTT-4.7.1-3]"),
                            ("a/b+/c", "[MQTT-4.7.1-3]"), ("++", "[MQTT-4.7.1-3]"),
                            ("a\x00/#", "U+0000"), ("a" * 65536, "65535")):
            e = self.assertRaises(ProtocolError, check_topic_filter, f)
            self.assertIn(fragment, e.reason)

    def test_reason_names_the_field(self):
        e = self.assertRaises(ProtocolError, check_topic_name, "a/#", "PUBLISH topic")
        self.assertEqual(e.reason, "PUBLISH topic contains wildcard [MQTT-3.3.2-2]")


class PublishHotPathTests(unittest.TestCase):
    """decode_publish's shortcuts (fast Publish construction, topic cache) change nothing."""

    def test_fast_publish_is_the_same_value(self):
        self.assertIsNot(decode._new_publish, Publish)  # the fast path is in use
        for args in (("a/b", b"p", 1, True, True, 7), ("t", b"", 0, False, False, None)):
            fast = decode._new_publish(*args)
            self.assertIs(type(fast), Publish)
            self.assertEqual(fast, Publish(*args))
            self.assertEqual(repr(fast), repr(Publish(*args)))
            self.assertEqual(hash(fast), hash(Publish(*args)))
        self.assertRaises(AttributeError, setattr, fast, "topic", "x")

    def test_decoded_flags_are_bools(self):
        [packet] = server_parse(encode(Publish("t", b"p", 2, True, True, 9)))
        self.assertEqual(packet, Publish("t", b"p", 2, True, True, 9))
        self.assertIs(packet.retain, True)
        self.assertIs(packet.dup, True)
        [packet] = server_parse(encode(Publish("t", b"p", 0, False)))
        self.assertIs(packet.retain, False)
        self.assertIs(packet.dup, False)

    def test_repeated_topic_decodes_to_one_string(self):
        data = encode(Publish("sensors/ü/1", b"a", 1, packet_id=1))
        first, second = server_parse(data + data)
        self.assertEqual(first.topic, "sensors/ü/1")
        self.assertIs(first.topic, second.topic)

    def test_invalid_topics_are_never_cached(self):
        for _ in range(2):
            self.assertServerRejects(frame(0x30, s("a/+") + b"p"), "wildcard")
            self.assertServerRejects(frame(0x30, s(b"\xff")), "UTF-8")
        self.assertNotIn(b"a/+", decode._TOPICS)
        self.assertNotIn(b"\xff", decode._TOPICS)

    def test_cache_is_bounded(self):
        self.patch(decode, "_TOPICS_MAX", 3)
        self.patch(decode, "_TOPICS", {})
        topics = [f"t/{i}" for i in range(10)] + ["x" * (decode._TOPIC_CACHE_LEN + 1)]
        data = b"".join(encode(Publish(t, b"p")) for t in topics)
        self.assertEqual([p.topic for p in server_parse(data)], topics)
        self.assertLessEqual(len(decode._TOPICS), 3)
        self.assertTrue(all(len(raw) <= decode._TOPIC_CACHE_LEN for raw in decode._TOPICS))

    def assertServerRejects(self, data, fragment):
        e = self.assertRaises(ProtocolError, server_parse, data)
        self.assertIn(fragment, e.reason)
