"""HANDOFF_AS: a hand-off the master's gate judged carries its account and client id."""
from twisted.trial import unittest

from mqttd.edge.handoff_wire import (
    HANDOFF_AS, HEADER, ChannelProtocolError, Handoff, decode, encode_handoff,
)


def round_trip(frame):
    size, frame_type = HEADER.unpack_from(frame)
    body = frame[HEADER.size:]
    assert len(body) == size
    return frame_type, decode(frame_type, body)


class HandoffAsTests(unittest.TestCase):
    def test_account_and_client_id_come_back_with_the_bytes_read(self):
        frame = encode_handoff(7, b"\x10\x0c", None, ("acme", "mqttd-m-1"))
        self.assertEqual(round_trip(frame),
                         (HANDOFF_AS, Handoff(7, b"\x10\x0c", None, ("acme", "mqttd-m-1"))))

    def test_with_a_relayed_peer_and_no_account(self):
        frame = encode_handoff(8, b"x", ("2001:db8::1", 8883), (None, None))
        self.assertEqual(round_trip(frame)[1],
                         Handoff(8, b"x", ("2001:db8::1", 8883), (None, None)))

    def test_utf8_client_id(self):
        frame = encode_handoff(9, b"", None, ("a.b-c", "gerät-ü"))
        self.assertEqual(round_trip(frame)[1].decided, ("a.b-c", "gerät-ü"))

    def test_every_truncation_is_a_protocol_error_not_a_crash(self):
        frame = encode_handoff(7, b"", ("192.0.2.1", 1), ("acme", "dev"))
        body = frame[HEADER.size:]
        for cut in range(len(body)):
            with self.assertRaises(ChannelProtocolError, msg=cut):
                decode(HANDOFF_AS, body[:cut])

    def test_fields_too_long_are_refused_before_sending(self):
        with self.assertRaises(ValueError):
            encode_handoff(1, b"", None, ("a" * 256, None))
        with self.assertRaises(ValueError):
            encode_handoff(1, b"", None, (None, "c" * 65536))
