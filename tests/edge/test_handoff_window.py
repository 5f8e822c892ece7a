"""The master's window: at most ``max_in_flight`` hand-offs sent and not acked, the
rest queued in order, the queue bounded in count and bytes; a lost channel fails every
pending hand-off."""
import socket

from twisted.internet import defer

from mqttd.edge.handoff import ChannelLost, HandoffQueueFull, HandoffRefused
from mqttd.edge.handoff_wire import encode_handoff
from tests.support.channels import WAIT, ChannelCase, Held
from tests.support.loopback import within


class WindowTests(ChannelCase):
    def held_channels(self, **master_args):
        """Channels whose worker holds every hand-off until the test releases it."""
        held = Held()
        self.addCleanup(held.close_all)
        master, worker = self.channels(adopt=held, **master_args)
        return master, worker, held

    def all_arrived(self, master):
        """Fires once the worker has read all the master wrote so far: a message is
        not held back by the window, so it arrives after what was sent before it."""
        master.send("ping", {})
        return self.to_worker.holding(len(self.to_worker) + 1)

    def fds(self, count):
        ends = [end for _ in range(count) for end in socket.socketpair()]
        for end in ends:
            self.addCleanup(end.close)
        return [end.fileno() for end in ends[::2]]

    @defer.inlineCallbacks
    def test_the_in_flight_cap_holds_and_the_queue_drains_in_order(self):
        master, _, held = self.held_channels(max_in_flight=3)
        acks = [master.hand_off(fd, b"p", i) for i, fd in enumerate(self.fds(10))]
        yield self.all_arrived(master)
        self.assertEqual([conn_id for conn_id, _, _ in held.held], [0, 1, 2])
        self.assertEqual((master.in_flight, master.queued), (3, 7))

        held.release(1)
        self.assertEqual((yield within(acks[1], WAIT)), 1)
        yield self.all_arrived(master)
        self.assertEqual([conn_id for conn_id, _, _ in held.held], [0, 2, 3])
        self.assertEqual((master.in_flight, master.queued), (3, 6))

        held.open()
        results = yield within(defer.gatherResults(acks[:1] + acks[2:]), WAIT)
        self.assertEqual(results, [0] + list(range(2, 10)))
        self.assertEqual((master.in_flight, master.queued), (0, 0))

    @defer.inlineCallbacks
    def test_the_window_is_bounded_in_bytes_and_a_bigger_frame_goes_alone(self):
        size = len(encode_handoff(0, b"p" * 10))
        master, _, held = self.held_channels(max_in_flight_bytes=2 * size)
        fds = self.fds(4)
        acks = [master.hand_off(fds[i], b"p" * 10, i) for i in range(3)]
        acks.append(master.hand_off(fds[3], b"p" * 100, 3))  # over the bound on its own
        yield self.all_arrived(master)
        self.assertEqual([conn_id for conn_id, _, _ in held.held], [0, 1])
        self.assertEqual((master.in_flight, master.in_flight_bytes, master.queued),
                         (2, 2 * size, 2))
        held.release()
        held.release()
        yield within(defer.gatherResults(acks[:2]), WAIT)
        yield self.all_arrived(master)
        self.assertEqual([conn_id for conn_id, _, _ in held.held], [2])  # 3 does not fit
        held.release()
        yield within(acks[2], WAIT)
        yield self.all_arrived(master)
        self.assertEqual([conn_id for conn_id, _, _ in held.held], [3])  # alone, it goes
        held.open()
        self.assertEqual((yield within(acks[3], WAIT)), 3)

    @defer.inlineCallbacks
    def test_the_queue_is_bounded_in_count_and_bytes(self):
        master, _, held = self.held_channels(max_in_flight=1, max_queued=2,
                                  max_queued_bytes=2 * len(encode_handoff(0, b"p" * 10)))
        fds = self.fds(5)
        acks = [master.hand_off(fds[i], b"p" * 10, i) for i in range(3)]
        full = master.hand_off(fds[3], b"p", 3)
        self.assertEqual((master.in_flight, master.queued), (1, 2))
        error = yield self.assertFailure(full, HandoffQueueFull)
        self.assertEqual(str(error), "conn 3: 1 hand-offs in flight and 2 (46 bytes) queued")
        yield self.all_arrived(master)
        held.release()
        yield within(acks[0], WAIT)
        # one left the queue: room for 10 bytes of preread again, but not for 11
        yield self.assertFailure(master.hand_off(fds[4], b"p" * 11, 4), HandoffQueueFull)
        ok = master.hand_off(fds[4], b"p" * 10, 5)
        self.assertEqual(master.queued, 2)
        with self.assertRaises(ValueError):
            master.hand_off(fds[4], b"", 5)  # already pending
        held.open()
        results = yield within(defer.gatherResults(acks[1:] + [ok]), WAIT)
        self.assertEqual(results, [1, 2, 5])

    @defer.inlineCallbacks
    def test_an_adoption_that_fails_later_fails_its_hand_off(self):
        master, _, held = self.held_channels(max_in_flight=1)
        refused, queued = [master.hand_off(fd, b"p", i) for i, fd in enumerate(self.fds(2))]
        yield self.all_arrived(master)
        held.release(error=RuntimeError("shutting down"))
        error = yield self.assertFailure(within(refused, WAIT), HandoffRefused)
        self.assertEqual(str(error), "conn 0: the worker could not adopt it: "
                                     "RuntimeError: shutting down")
        held.open()
        self.assertEqual((yield within(queued, WAIT)), 1)  # the window moved on

    @defer.inlineCallbacks
    def test_channel_loss_fails_every_pending_hand_off(self):
        master, worker, held = self.held_channels(max_in_flight=2)
        acks = [master.hand_off(fd, b"p", i) for i, fd in enumerate(self.fds(5))]
        yield self.all_arrived(master)
        self.assertEqual((master.in_flight, master.queued), (2, 3))
        worker.transport.abortConnection()  # the worker died
        for ack in acks:
            error = yield self.assertFailure(within(ack, WAIT), ChannelLost)
            self.assertIn("hand-off channel lost", str(error))
        self.assertEqual((master.in_flight, master.queued), (0, 0))
        yield self.assertFailure(master.hand_off(self.fds(1)[0], b"", 9), ChannelLost)
        self.assertFalse(master.send("closed", {"conn_id": 1}))
        held.release(error=ChannelLost("gone"))  # an ack after the loss goes nowhere
        lost = yield master.when_lost()
        self.assertIsInstance(lost, ChannelLost)
