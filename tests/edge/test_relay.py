"""The relay between a TLS client and its worker's socketpair, on StringTransports and a
Clock: bytes both ways in order (byte by byte), each side's full write buffer pauses the
other side's reads and its drain resumes them, and a side that goes closes the other
after its last bytes, or aborts it after the grace."""
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mqttd.edge.relay import CLOSE_GRACE, Relay


class _Transport(StringTransport):
    """A StringTransport that also knows abortConnection, and says when it is closed."""

    aborted = False

    def abortConnection(self):
        self.aborted = True
        self.loseConnection()


class RelayTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.done = []
        self.relay = Relay(self.clock, when_done=lambda: self.done.append(True))
        self.tls, self.plain = _Transport(), _Transport()
        self.relay.second.makeConnection(self.plain)  # the worker's side first, as the master
        self.relay.first.makeConnection(self.tls)

    def test_bytes_go_both_ways_in_order_byte_by_byte(self):
        upstream = b"\x30\x07\x00\x01tpay" * 3
        for i in range(len(upstream)):
            self.relay.first.dataReceived(upstream[i:i + 1])
        downstream = b"\x40\x02\x00\x01" * 5
        for i in range(len(downstream)):
            self.relay.second.dataReceived(downstream[i:i + 1])
        self.assertEqual(self.plain.value(), upstream)
        self.assertEqual(self.tls.value(), downstream)

    def test_a_full_side_pauses_the_other_sides_reads_until_it_drains(self):
        # Each transport has the other as its producer: Twisted pauses it when the
        # transport's write buffer is over its size and resumes it when it has drained.
        self.assertTrue(self.plain.streaming and self.tls.streaming)
        self.plain.producer.pauseProducing()  # the worker reads slower than the client writes
        self.assertEqual(self.tls.producerState, "paused")
        self.assertEqual(self.plain.producerState, "producing")
        self.plain.producer.resumeProducing()
        self.assertEqual(self.tls.producerState, "producing")
        self.tls.producer.pauseProducing()  # the client reads slower than the worker writes
        self.assertEqual(self.plain.producerState, "paused")
        self.tls.producer.resumeProducing()
        self.assertEqual(self.plain.producerState, "producing")

    def test_the_producer_never_closes_the_other_side_itself(self):
        # A transport that loses its connection calls stopProducing on its producer:
        # the other side must still get its last bytes written first.
        self.plain.producer.stopProducing()
        self.assertFalse(self.tls.disconnecting)

    def test_the_client_going_closes_the_worker_side_after_its_bytes(self):
        self.relay.first.dataReceived(b"last")
        self.relay.second.dataReceived(b"")  # nothing from the worker
        self.tls.producer.pauseProducing()  # paused for the client's slow reads
        self.relay.first.connectionLost(None)
        self.assertEqual(self.plain.value(), b"last")
        self.assertTrue(self.plain.disconnecting)
        self.assertIsNone(self.plain.producer)  # unregistered: it can finish closing
        self.assertEqual(self.plain.producerState, "producing")  # reads its peer's close
        self.assertFalse(self.plain.aborted)
        self.relay.second.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.done, [True])

    def test_the_worker_going_closes_the_client_side(self):
        self.relay.second.dataReceived(b"\x20\x02\x00\x05")  # a CONNACK refusal, then close
        self.relay.second.connectionLost(None)
        self.assertEqual(self.tls.value(), b"\x20\x02\x00\x05")
        self.assertTrue(self.tls.disconnecting)
        self.assertIsNone(self.tls.producer)
        self.assertEqual(self.done, [])
        self.relay.first.connectionLost(None)
        self.assertEqual(self.done, [True])
        self.assertTrue(self.relay.done)

    def test_a_side_that_does_not_close_is_aborted_after_the_grace(self):
        self.relay.second.connectionLost(None)
        self.clock.advance(CLOSE_GRACE - 0.001)
        self.assertFalse(self.tls.aborted)
        self.clock.advance(0.001)
        self.assertTrue(self.tls.aborted)

    def test_bytes_after_a_side_is_gone_are_dropped(self):
        self.relay.second.connectionLost(None)
        self.relay.first.dataReceived(b"too late")
        self.assertEqual(self.plain.value(), b"")


class JoinTests(unittest.TestCase):
    def test_a_side_that_connects_after_the_other_went_is_closed(self):
        clock = Clock()
        relay = Relay(clock)
        plain, tls = _Transport(), _Transport()
        relay.second.makeConnection(plain)
        relay.second.connectionLost(None)
        relay.first.makeConnection(tls)
        self.assertTrue(tls.disconnecting)
        self.assertIsNone(tls.producer)
