"""FORWARD frames, the channel's binary frame for cross-worker publishes: every byte
value of a body comes back as it went, byte by byte; the frame's own limit; malformed
frames are one clear error. And the channel's ``backlog``: 0 while the transport keeps
up, the bytes written since it filled up otherwise, and ``on_drained`` once it emptied,
on a real socketpair whose far end the test reads or not."""
from twisted.internet import defer, reactor
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mqttd.edge.handoff import MasterChannel, WorkerChannel, channel_socketpair, open_channel
from mqttd.edge.handoff_wire import (
    FORWARD, HEADER, MAX_BODY, MESSAGE, ChannelProtocolError, Forward, FrameReader, decode,
    encode_forward, encode_message,
)
from tests.support.channels import ChannelCase, read_frames as _frames
from tests.support.loopback import within

BINARY = bytes(range(256)) * 3


class ForwardWireTests(unittest.TestCase):
    def test_round_trip_byte_by_byte(self):
        stream = (encode_forward(3, (2, 65535), BINARY) + encode_forward(0, (), b"")
                  + encode_message("interest", {"add": ["a/#"]})
                  + encode_forward(255, tuple(range(1, 257)), b"\x00"))
        reader, values = _frames(stream)
        self.assertEqual(values[0], Forward(3, (2, 65535), BINARY))
        self.assertEqual(values[1], Forward(0, (), b""))
        self.assertEqual(values[2].kind, "interest")
        self.assertEqual(values[3], Forward(255, tuple(range(1, 257)), b"\x00"))
        self.assertEqual((reader.error, reader.buffered), (None, 0))

    def test_the_body_is_not_base64(self):
        frame = encode_forward(1, (2,), BINARY)
        self.assertEqual(len(frame), HEADER.size + 3 + 2 + len(BINARY))
        self.assertTrue(frame.endswith(BINARY))

    def test_what_cannot_be_framed_raises(self):
        for flags, slots in ((256, ()), (-1, ()), (0, (65536,)), (0, (-1,)), (0, ("2",))):
            with self.assertRaises(ValueError, msg=(flags, slots)):
                encode_forward(flags, slots, b"x")

    def test_malformed_frames_are_protocol_errors(self):
        for body in (b"", b"\x01\x00", b"\x01\x00\x02\x00\x01"):  # short; 2 slots, room for 1
            with self.assertRaises(ChannelProtocolError, msg=body):
                decode(FORWARD, body)

    def test_forward_frames_have_their_own_limit(self):
        big = b"y" * (MAX_BODY + 100)
        reader = FrameReader(max_forward_body=MAX_BODY + 200)
        _, values = _frames(encode_forward(1, (1,), big), reader, chunk=65536)
        self.assertEqual(values, [Forward(1, (1,), big)])
        self.assertIsNone(reader.error)
        # A control message keeps MAX_BODY, and a forward frame over its limit is refused.
        self.assertEqual(reader.feed(HEADER.pack(MAX_BODY + 1, MESSAGE)), [])
        self.assertIsInstance(reader.error, ChannelProtocolError)
        reader = FrameReader()
        self.assertEqual(reader.feed(encode_forward(1, (1,), big)[:HEADER.size]), [])
        self.assertIn("forward frame", str(reader.error))


class ForwardChannelTests(ChannelCase):
    def setUp(self):
        super().setUp()
        self.forwarded = []
        self.drained = []

    def ends(self):
        master = MasterChannel(self.to_master, on_forward=self._forward,
                               on_drained=lambda: self.drained.append("master"))
        worker = WorkerChannel(lambda *a: None, self.to_worker, on_forward=self._forward)
        return master, worker

    def _forward(self, flags, slots, body):
        self.forwarded.append((flags, slots, body))

    @defer.inlineCallbacks
    def test_forward_frames_both_ways_in_order_with_messages(self):
        master, worker = self.ends()
        self.raw_join(master, worker)
        for i in range(50):
            self.assertTrue(worker.forward(1, (2,), BINARY + bytes([i])))
            self.assertTrue(master.forward(3, (1,), bytes([i])))
        worker.send("interest", {"add": ["x"]})
        yield self.to_master.holding(1)
        yield within(self._until(lambda: len(self.forwarded) == 100), 10)
        ups = [f for f in self.forwarded if f[0] == 1]
        downs = [f for f in self.forwarded if f[0] == 3]
        self.assertEqual(ups, [(1, (2,), BINARY + bytes([i])) for i in range(50)])
        self.assertEqual(downs, [(3, (1,), bytes([i])) for i in range(50)])

    def test_an_end_without_a_handler_drops_forward_frames(self):
        channel = WorkerChannel(lambda *a: None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(encode_forward(1, (), b"x"))
        self.assertFalse(transport.disconnecting)

    def test_backlog_counts_what_is_written_once_the_transport_is_full(self):
        master, _ = self.ends()
        transport = StringTransport()
        master.makeConnection(transport)
        self.assertIs(transport.producer, master)  # it learns when the buffer fills
        master.forward(1, (2,), b"x" * 100)
        self.assertEqual(master.backlog, 0)
        transport.producer.pauseProducing()  # what the transport does past 64 KiB
        master.forward(1, (2,), b"x" * 100)
        master.send("interest", {"add": ["a"]})
        written = len(encode_forward(1, (2,), b"x" * 100)) + len(
            encode_message("interest", {"add": ["a"]}))
        self.assertEqual(master.backlog, written)
        transport.producer.resumeProducing()
        self.assertEqual((master.backlog, self.drained), (0, ["master"]))
        master.close()
        self.assertIsNone(transport.producer)  # or loseConnection would never finish

    @defer.inlineCallbacks
    def test_a_reader_that_stops_reading_fills_the_backlog_and_drains_it(self):
        master, _ = self.ends()
        far = self.raw_peer(master)
        frame_body = b"z" * 4096
        for _ in range(1000):  # 4 MB: past the kernel's buffer and the transport's 64 KiB
            master.forward(1, (2,), frame_body)
        self.assertGreater(master.backlog, 3_000_000)
        self.assertEqual(self.drained, [])
        far.setblocking(False)
        read = 0
        total = 1000 * len(encode_forward(1, (2,), frame_body))
        while read < total:
            try:
                read += len(far.recv(1 << 20))
            except BlockingIOError:
                yield self._turn()
        yield within(self._until(lambda: self.drained), 10)
        self.assertEqual((master.backlog, self.drained), (0, ["master"]))

    # -- helpers ------------------------------------------------------------------------

    def raw_join(self, master, worker):
        ours, theirs = channel_socketpair()
        open_channel(reactor, ours, master)
        open_channel(reactor, theirs, worker)
        self.addCleanup(self.shut, worker)
        self.addCleanup(self.shut, master)

    def _turn(self):
        d = defer.Deferred()
        reactor.callLater(0.001, d.callback, None)
        return d

    @defer.inlineCallbacks
    def _until(self, condition):
        while not condition():
            yield self._turn()

