"""Control messages both ways on the hand-off channel, and the protocol errors that
close it: an oversized frame, a malformed one, fds without frames."""
import socket

from twisted.internet import defer

from mqttd.edge.handoff import MasterChannel, WorkerChannel
from mqttd.edge.handoff_wire import HEADER, MAX_BODY, MESSAGE, encode_ack, encode_handoff
from tests.support.channels import WAIT, ChannelCase
from tests.support.logs import capture_logs
from tests.support.loopback import within


class MessageTests(ChannelCase):
    @defer.inlineCallbacks
    def test_control_messages_both_ways_in_order(self):
        master, worker = self.channels()
        for i in range(100):
            self.assertTrue(master.send("interest", {"topics": ["a/#", f"t/{i}"], "n": i}))
            self.assertTrue(worker.send("closed", {"conn_id": i, "why": "caf\u00e9"}))
        yield self.to_worker.holding(100)
        yield self.to_master.holding(100)
        self.assertEqual(self.to_worker,
                         [("interest", {"topics": ["a/#", f"t/{i}"], "n": i}) for i in range(100)])
        self.assertEqual(self.to_master,
                         [("closed", {"conn_id": i, "why": "caf\u00e9"}) for i in range(100)])

    def test_a_payload_over_the_limit_is_refused_unsent(self):
        master, _ = self.channels()
        with self.assertRaises(ValueError):
            master.send("publish", {"payload": "x" * (4 * 1024 * 1024)})
        with self.assertRaises(ValueError):
            master.hand_off(0, b"x" * (4 * 1024 * 1024 + 1), 1)
        self.assertEqual(master.in_flight, 0)

    @defer.inlineCallbacks
    def test_messages_interleave_with_hand_offs(self):
        master, worker = self.channels()
        client, server = self.tcp_pair()
        master.send("before", {})
        ack = master.hand_off(server.fileno(), b"x", 1)
        master.send("after", {})
        yield within(ack, WAIT)
        server.close()
        yield self.to_worker.holding(2)
        self.assertEqual([kind for kind, _ in self.to_worker], ["before", "after"])


class ProtocolErrorTests(ChannelCase):
    @defer.inlineCallbacks
    def broken(self, channel, raw, fds=(), peer=None):
        """Writes ``raw`` (with ``fds``) to ``channel`` from a raw peer; the reason the
        channel closed with, checked against its one log line."""
        events = capture_logs(self)
        peer = peer or self.raw_peer(channel)
        socket.send_fds(peer, [raw], list(fds))
        lost = yield within(channel.when_lost(), WAIT)
        errors = [e for e in events if e.get("log_format", "").startswith(
            "hand-off channel ({end}): protocol error")]
        self.assertEqual(len(errors), 1)
        self.assertEqual(f"hand-off channel lost: {errors[0]['error']}", str(lost))
        return str(lost)

    @defer.inlineCallbacks
    def test_an_oversized_frame_closes_the_channel(self):
        for channel in (MasterChannel(), WorkerChannel(lambda *a: None)):
            lost = yield self.broken(channel, HEADER.pack(MAX_BODY + 1, MESSAGE))
            self.assertEqual(lost, f"hand-off channel lost: message frame of {MAX_BODY + 1} "
                                   f"bytes exceeds the {MAX_BODY}-byte limit")

    @defer.inlineCallbacks
    def test_malformed_frames_close_the_channel(self):
        bad_json = HEADER.pack(7, MESSAGE) + b"\x01k{nope"
        cases = [
            (WorkerChannel(lambda *a: None), bad_json, "k message payload is not JSON"),
            (WorkerChannel(lambda *a: None), encode_ack(1, True), "unexpected ack frame"),
            (WorkerChannel(lambda *a: None), HEADER.pack(0, 77), "unexpected unknown type 77"),
            (WorkerChannel(lambda *a: None), encode_handoff(5, b"x"),
             "hand-off frame for conn id 5 came without a file descriptor"),
            (MasterChannel(), encode_handoff(5, b"x"), "unexpected hand-off frame"),
            (MasterChannel(), encode_ack(5, True), "ack for conn id 5, which is not in flight"),
        ]
        for channel, raw, error in cases:
            lost = yield self.broken(channel, raw)
            self.assertTrue(lost.startswith("hand-off channel lost: " + error), lost)

    @defer.inlineCallbacks
    def test_unpaired_fds_are_bounded_and_closed_with_the_channel(self):
        client, server = self.tcp_pair()
        peer = self.twisted_client(client)
        spare = [end for _ in range(2) for end in socket.socketpair()]
        for end in spare:
            self.addCleanup(end.close)
        worker = WorkerChannel(lambda *a: None, max_unpaired_fds=2)
        raw = self.raw_peer(worker)
        socket.send_fds(raw, [b"\x00"], [server.fileno()])  # a byte of a frame to come
        server.close()  # the worker's copy is now the socket's last
        socket.send_fds(raw, [b"\x00"], [spare[0].fileno()])
        lost = yield self.broken(worker, b"\x00", [spare[2].fileno()], peer=raw)
        self.assertEqual(lost, "hand-off channel lost: 3 file descriptors arrived ahead "
                               "of their hand-off frames (at most 2)")
        yield within(peer.lost, WAIT)  # the worker closed it: the client saw the end
