"""A stored message as a FORWARD frame's body: every field comes back (raw payload bytes,
UTF-8 texts, no username), ``peek`` reads the topic, the key and a clear without the rest, a
malformed body is one MalformedBody, and the frame limit holds the biggest message."""
from twisted.trial import unittest

from mqttd.edge.handoff_wire import FrameReader, encode_forward
from mqttd.store.sink import Message
from mqttd.tree.relay_wire import MalformedBody, decode, encode, frame_limit, peek


def message(**fields):
    values = dict(key="0123456789abcdef-0000000001-00-deadbeefdeadbeef", client_id="dev-1",
                  username="alice", topic="a/b", payload=bytes(range(256)), qos=1,
                  retain=False, received_at=1_700_000_000.25)
    values.update(fields)
    return Message(**values)


class RoundTripTests(unittest.TestCase):
    def test_every_field_comes_back(self):
        for m in (message(), message(username=None, qos=0), message(retain=True, qos=2),
                  message(topic="\u00e9t\u00e9/\U0001f600", client_id="\u4e2d", payload=b""),
                  message(username="")):
            self.assertEqual(decode(encode(m)), m)

    def test_peek_reads_the_topic_the_key_and_a_clear(self):
        kept = message(topic="r/x", retain=True)
        self.assertEqual(peek(encode(kept)), ("r/x", kept.key, False))
        cleared = message(topic="r/x", payload=b"")
        self.assertEqual(peek(encode(cleared)), ("r/x", cleared.key, True))

    def test_malformed_bodies(self):
        body = encode(message())
        for bad in (b"", body[:10], body[:20], b"\x03" + body[1:],
                    body[:18] + b"\xff" * (len(body) - 18)):
            with self.assertRaises(MalformedBody, msg=bad[:30]):
                decode(bad)
        with self.assertRaises(MalformedBody):
            peek(body[:20])

    def test_a_text_over_65535_bytes_cannot_go(self):
        with self.assertRaises(ValueError):
            encode(message(client_id="c" * 65536))

    def test_the_biggest_message_fits_the_frame_limit(self):
        packet = 100_000
        big = message(key="k" * 65535, client_id="c" * 65535, username="u" * 65535,
                      topic="t" * 65535, payload=b"p" * (packet - 65535))
        frame = encode_forward(3, tuple(range(65535)), encode(big))
        reader = FrameReader(max_forward_body=frame_limit(packet))
        self.assertEqual(len(reader.feed(frame)), 1)
        self.assertIsNone(reader.error)
