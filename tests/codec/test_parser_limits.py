"""The parser's limits before the body is read: max_connect_size, and partial_size."""
from twisted.trial import unittest

from mqttd.codec import Connect, Parser, ProtocolError, Publish, Will, encode


def big_connect(size):
    """A CONNECT of exactly ``size`` bytes (its will message pads it)."""
    probe = len(encode(Connect("c", will=Will("w", b"", 0, False))))
    payload = b"x" * (size - probe)
    data = encode(Connect("c", will=Will("w", payload, 0, False)))
    while len(data) != size:  # the remaining length grew by a byte: trim
        payload = payload[:-(len(data) - size)]
        data = encode(Connect("c", will=Will("w", payload, 0, False)))
    return data


class MaxConnectSizeTests(unittest.TestCase):
    def test_a_connect_over_the_limit_fails_from_its_header_alone(self):
        parser = Parser(1_000_000, server=True, max_connect_size=1000)
        data = big_connect(1001)
        with self.assertRaises(ProtocolError) as caught:
            for i in range(len(data)):  # byte by byte: it fails as the header completes
                parser.feed(data[i:i + 1])
        self.assertEqual(i, 2)  # first byte, two length bytes: nothing of the body read
        self.assertIn("CONNECT of 1001 bytes exceeds max_connect_size 1000",
                      caught.exception.reason)

    def test_a_connect_at_the_limit_is_read(self):
        parser = Parser(1_000_000, server=True, max_connect_size=1000)
        [connect] = parser.feed(big_connect(1000))
        self.assertIsInstance(connect, Connect)

    def test_after_the_connect_max_packet_size_applies(self):
        parser = Parser(1_000_000, server=True, max_connect_size=1000)
        publish = encode(Publish("t", b"p" * 50_000, 0, False, False, None))
        packets = parser.feed(encode(Connect("c")) + publish)
        self.assertEqual([type(p) for p in packets], [Connect, Publish])
        with self.assertRaises(ProtocolError) as caught:
            parser.feed(encode(Publish("t", b"p" * 1_000_000, 0, False, False, None))[:5])
        self.assertIn("exceeds max_packet_size 1000000", caught.exception.reason)

    def test_the_smaller_of_the_two_limits_holds(self):
        parser = Parser(500, server=True, max_connect_size=1000)
        with self.assertRaises(ProtocolError) as caught:
            parser.feed(big_connect(600))
        self.assertIn("exceeds max_packet_size 500", caught.exception.reason)


class PartialSizeTests(unittest.TestCase):
    def test_partial_size_is_the_whole_packet_once_its_header_is_read(self):
        parser = Parser(1_000_000, server=True)
        parser.feed(encode(Connect("c")))
        data = encode(Publish("t", b"p" * 10_000, 0, False, False, None))
        self.assertEqual(parser.partial_size, 0)
        parser.feed(data[:1])
        self.assertEqual(parser.partial_size, 1)  # no length yet: what is held
        parser.feed(data[1:2])
        self.assertEqual(parser.partial_size, 2)  # the length is two bytes long
        parser.feed(data[2:10])
        self.assertEqual(parser.partial_size, len(data))
        self.assertEqual(parser.buffered, 10)
        [publish] = parser.feed(data[10:] + data[:5])  # done, and the next one begun
        self.assertEqual(parser.partial_size, len(data))
        parser.feed(data[5:])
        self.assertEqual(parser.partial_size, 0)
