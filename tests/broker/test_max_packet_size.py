"""The default ``broker.max_packet_size`` carries a payload of exactly 1 MiB.

The limit counts the whole packet, header and topic included, so a default of
1,048,576 refused the 1 MiB payload that paho, gmqtt, aiomqtt, mosquitto_pub and
MQTT.js users send. The default now holds one with the longest topic MQTT allows.
"""
from twisted.trial import unittest

from mqttd.codec import Puback, encode
from mqttd.config import BrokerConfig
from tests.support.broker import Harness, pub

MIB = 1024 * 1024
LONGEST_TOPIC = "t" * 65535


class DefaultMaxPacketSizeTests(unittest.TestCase):
    def test_a_1_mib_payload_with_the_longest_topic_is_taken(self):
        h = Harness()  # BrokerConfig's defaults
        c = h.client("big")
        c.send(pub(LONGEST_TOPIC, b"\x00" * MIB, qos=1, pid=1))
        self.assertEqual(c.received(), [Puback(1)])
        self.assertFalse(c.closed)
        self.assertEqual(len(h.store.messages[-1].payload), MIB)

    def test_the_default_is_that_packet_exactly(self):
        packet = encode(pub(LONGEST_TOPIC, b"\x00" * MIB, qos=2, pid=1))
        self.assertEqual(BrokerConfig().max_packet_size, len(packet))
        h = Harness()
        c = h.client("bigger")
        c.send(pub(LONGEST_TOPIC, b"\x00" * (MIB + 1), qos=1, pid=1))
        self.assertTrue(c.closed)
