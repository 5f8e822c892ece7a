"""Malformed input closes that one connection; the broker and its other clients carry on."""
import os

from tests.integration.support.process import ANONYMOUS
from tests.integration.support.raw_client import (
    PacketType,
    connect_packet,
    packet,
    publish_packet,
    subscribe_packet,
)
from tests.integration.support.testcase import BrokerTestCase

# Sent as the very first bytes of a connection.
BEFORE_CONNECT = {
    "reserved packet type 0": b"\x00\x00",
    "http request": b"GET / HTTP/1.1\r\nHost: mqttd\r\n\r\n",
    "random bytes": bytes.fromhex("deadbeef00ff10ffffffff7f") + os.urandom(64),
    "publish before connect": publish_packet("x/y", b"sneak", qos=0),
    "subscribe before connect": subscribe_packet(1, [("#", 0)]),
    "remaining length over 4 bytes": b"\x10\xff\xff\xff\xff\x7f",
    "connect with bad protocol name": connect_packet("bad", protocol_name="MQTX"),
    "connect with reserved flag set": packet(0x10, b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x03bad"),
    "connect with flags nibble": packet(0x11, connect_packet("bad")[2:]),
    "connect truncated inside": packet(0x10, b"\x00\x04MQTT\x04\x02\x00"),
}

# Sent right after a successful CONNECT.
AFTER_CONNECT = {
    "reserved packet type 15": b"\xf0\x00",
    "second connect": connect_packet("again"),
    "subscribe with wrong fixed-header flags": b"\x80" + subscribe_packet(1, [("a", 0)])[1:],
    "subscribe with no topics": packet(0x82, b"\x00\x01"),
    "publish with qos 3": bytes([0x36]) + publish_packet("a", b"x", qos=1)[1:],
    "publish topic with wildcard": publish_packet("a/+/b", b"x", qos=0),
    "publish topic not utf-8": packet(0x30, b"\x00\x02\xff\xfe" + b"payload"),
    "qos1 publish with packet id 0": publish_packet("a/b", b"x", qos=1, packet_id=0),
    "remaining length over 4 bytes": b"\x30\xff\xff\xff\xff\x7f",
    "connack from a client": b"\x20\x02\x00\x00",
}


class MalformedInputTests(BrokerTestCase):
    def setUp(self):
        super().setUp()
        # A good client connected throughout: it must keep working.
        self.good = self.client()
        self.good.subscribe("good/#", 1)
        self.good_publisher = self.client()
        self.rounds = 0

    def assertGoodClientWorks(self, label):
        self.rounds += 1
        payload = f"{label} {self.rounds}".encode()
        self.good_publisher.publish("good/t", payload, 1)
        message = self.good.get_message()
        self.assertEqual(message.payload, payload, f"good client disrupted after {label!r}")
        self.assertFalse(self.good.disconnected.is_set(), f"good client disconnected after {label!r}")

    def assertClosedBy(self, label, data, connect_first):
        raw = self.raw()
        if connect_first:
            self.assertEqual(raw.connect(client_id=self.new_id("m")), (0, False), label)
        try:
            raw.send(data)
        except OSError:
            pass  # already closed by the broker: fine
        try:
            raw.wait_closed(3)
        except AssertionError:
            self.fail(f"the broker kept the connection open after {label!r}\n{self.broker.tail()}")
        self.assertGoodClientWorks(label)

    def test_garbage_before_connect(self):
        for label, data in BEFORE_CONNECT.items():
            self.assertClosedBy(label, data, connect_first=False)

    def test_garbage_after_connect(self):
        for label, data in AFTER_CONNECT.items():
            self.assertClosedBy(label, data, connect_first=True)

    def test_bad_protocol_level_gets_connack_1(self):
        """MQTT-3.1.2-2: an unsupported level is answered with CONNACK 1, then closed."""
        raw = self.raw()
        raw.send(connect_packet(self.new_id("m"), level=99))
        try:
            ptype, _, body = raw.read_packet(3)
        except Exception as e:  # noqa: BLE001 - a bare close is a failure here too
            self.fail(f"no CONNACK for protocol level 99: {e!r}")
        self.assertEqual((ptype, body[1:]), (PacketType.CONNACK, b"\x01"))
        raw.wait_closed(3)
        self.assertGoodClientWorks("level 99")

    def test_garbage_does_not_publish_half_a_message(self):
        """A PUBLISH whose connection dies mid-packet is not delivered."""
        raw = self.raw()
        raw.connect(client_id=self.new_id("m"))
        whole = publish_packet("good/partial", b"x" * 1000, qos=1, packet_id=7)
        raw.send(whole[:500])
        raw.abort()
        self.assertGoodClientWorks("partial publish")  # only the marker arrives
        self.good.no_message(0.1)

    def test_many_bad_connections_then_new_clients_work(self):
        for i in range(20):
            raw = self.raw()
            try:
                raw.send(os.urandom(32))
            except OSError:
                pass
            raw.abort()
        self.assertRoundTrip("after/burst", 2)
        self.assertGoodClientWorks("burst")


class PacketSizeTests(BrokerTestCase):
    config = ANONYMOUS + "[broker]\nmax_packet_size = 1024\n"

    def test_oversized_publish_closes_connection_before_body(self):
        good = self.client()
        good.subscribe("size/#", 1)
        raw = self.raw()
        raw.connect(client_id=self.new_id("m"))
        # Announce a 100 kB PUBLISH and send only the header and topic: the broker must
        # close on the announced length, not wait for (or buffer) the body.
        header = b"\x32" + bytes.fromhex("a08d06") + b"\x00\x06size/x\x00\x01"
        raw.send(header)
        raw.wait_closed(3)
        pub = self.client()
        pub.publish("size/ok", b"y" * 500, 1)
        message = good.get_message()
        self.assertEqual((message.topic, len(message.payload)), ("size/ok", 500))
        good.no_message(0.1)
