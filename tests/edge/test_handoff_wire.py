"""The hand-off channel's frames alone (no sockets): what goes out is what comes back,
byte by byte; an oversized header is refused as soon as it arrives; a malformed body is
one clear ChannelProtocolError; what cannot be framed is refused before it is sent."""
from twisted.trial import unittest

from mqttd.edge.handoff_wire import (
    ACK, HANDOFF, HEADER, MAX_BODY, MAX_PAYLOAD, MESSAGE, Ack, ChannelProtocolError,
    FrameReader, Handoff, Message, decode, encode_ack, encode_handoff, encode_message,
)
from tests.support.channels import read_frames as _read_all


class RoundTripTests(unittest.TestCase):
    def test_every_frame_type_byte_by_byte(self):
        stream = (encode_handoff(7, b"\x10\x0cCONNECT") + encode_ack(7, True)
                  + encode_ack(2 ** 64 - 1, False, "ENOTCONN: gone")
                  + encode_message("closed", {"conn_id": 7, "why": "caf\u00e9"})
                  + encode_handoff(0, b""))
        reader, values = _read_all(stream)
        self.assertEqual(values, [
            Handoff(7, b"\x10\x0cCONNECT"), Ack(7, True), Ack(2 ** 64 - 1, False, "ENOTCONN: gone"),
            Message("closed", {"conn_id": 7, "why": "caf\u00e9"}), Handoff(0, b"")])
        self.assertEqual((reader.error, reader.buffered), (None, 0))

    def test_many_frames_in_one_read(self):
        stream = b"".join(encode_handoff(i, bytes([i % 256]) * i) for i in range(300))
        _, values = _read_all(stream, chunk=len(stream))
        self.assertEqual(values, [Handoff(i, bytes([i % 256]) * i) for i in range(300)])

    def test_a_partial_frame_waits(self):
        frame = encode_message("interest", {"topics": ["a/#"]})
        reader = FrameReader()
        self.assertEqual(reader.feed(frame[:-1]), [])
        self.assertEqual(reader.buffered, len(frame) - 1)
        self.assertEqual(reader.feed(frame[-1:]), [(MESSAGE, frame[HEADER.size:])])

    def test_the_largest_payloads_fit(self):
        preread = b"x" * MAX_PAYLOAD
        _, values = _read_all(encode_handoff(1, preread), chunk=65536)
        self.assertEqual(values, [Handoff(1, preread)])
        kind = "k" * 255
        frame = encode_message(kind, {"p": "y" * (MAX_PAYLOAD - 8)})
        self.assertEqual(len(frame), HEADER.size + MAX_BODY)
        self.assertEqual(_read_all(frame, chunk=65536)[1][0].kind, kind)


class RefusedTests(unittest.TestCase):
    def test_an_oversized_header_is_refused_before_its_body(self):
        good = encode_ack(3, True)
        reader = FrameReader()
        frames = reader.feed(good + HEADER.pack(MAX_BODY + 1, MESSAGE))
        self.assertEqual(frames, [(ACK, good[HEADER.size:])])  # what came before it
        self.assertIsInstance(reader.error, ChannelProtocolError)
        self.assertEqual(str(reader.error),
                         f"message frame of {MAX_BODY + 1} bytes exceeds the "
                         f"{MAX_BODY}-byte limit")
        self.assertEqual((reader.feed(good), reader.buffered), ([], 0))

    def test_malformed_bodies(self):
        cases = {
            (HANDOFF, b"\x00" * 7): "hand-off frame of 7 bytes has no conn id",
            (ACK, b"\x00" * 8): "ack frame of 8 bytes is too short",
            (ACK, b"\x00" * 9 + b"\xff"): "ack reason is not UTF-8",
            (MESSAGE, b""): "message frame has no kind",
            (MESSAGE, b"\x05abc"): "message frame has no kind",
            (MESSAGE, b"\x02\xff\xfe{}"): "message kind is not UTF-8",
            (MESSAGE, b"\x01k[1]"): "k message payload is not a JSON object",
            (9, b""): "frame of unknown type 9",
        }
        for (frame_type, body), error in cases.items():
            with self.assertRaises(ChannelProtocolError) as caught:
                decode(frame_type, body)
            self.assertEqual(str(caught.exception), error)
        with self.assertRaises(ChannelProtocolError) as caught:
            decode(MESSAGE, b"\x01k{nope")
        self.assertTrue(str(caught.exception).startswith("k message payload is not JSON"))

    def test_what_cannot_be_framed_is_refused_before_sending(self):
        for call, error in [
            (lambda: encode_handoff(1, b"x" * (MAX_PAYLOAD + 1)),
             f"preread of {MAX_PAYLOAD + 1} bytes exceeds {MAX_PAYLOAD}"),
            (lambda: encode_handoff(-1, b""), "conn id -1 is not an unsigned 64-bit integer"),
            (lambda: encode_ack(2 ** 64, True),
             f"conn id {2 ** 64} is not an unsigned 64-bit integer"),
            (lambda: encode_message("", {}), "message kind '' must be 1..255 UTF-8 bytes"),
            (lambda: encode_message("k" * 256, {}),
             f"message kind '{'k' * 256}' must be 1..255 UTF-8 bytes"),
            (lambda: encode_message("k", [1]), "message payload must be a dict, not list"),
            (lambda: encode_message("k", {"p": "y" * MAX_PAYLOAD}),
             f"k payload of {MAX_PAYLOAD + 8} bytes exceeds {MAX_PAYLOAD}"),
        ]:
            with self.assertRaises(ValueError) as caught:
                call()
            self.assertEqual(str(caught.exception), error)
