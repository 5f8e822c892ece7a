"""The master reads exactly one CONNECT, within its size and time limits, and keeps the rest.

A real socketpair stands in for the accepted socket; the reactor is a MemoryReactorClock
and each test calls doRead as the reactor would, so time and reads are the test's.
"""
import socket

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.codec import Connect, Publish, encode
from mqttd.edge.connect_reader import PendingConnect


@attrs.frozen
class Limits:
    max_connect_size: int = 128
    max_packet_size: int = 1000
    idle_timeout: float = 15.0


CONNECT = encode(Connect(client_id="dev-1", clean_session=True, keepalive=30))
PUBLISH = encode(Publish(topic="t", payload=b"x" * 10, qos=0))


class ReaderTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.ours, self.client = socket.socketpair()
        self.ours.setblocking(False)
        self.addCleanup(self.client.close)
        self.addCleanup(self.ours.close)
        self.connected, self.closed = [], []
        self.pending = PendingConnect(
            self.reactor, self.ours, "127.0.0.9", Limits(),
            lambda p, c: self.connected.append((p, c)),
            lambda p, reason: self.closed.append(reason))

    def feed(self, data):
        self.client.sendall(data)
        self.pending.doRead()

    def test_connect_byte_by_byte_then_the_bytes_after_it_are_kept(self):
        self.assertIn(self.pending, self.reactor.getReaders())
        for i in range(len(CONNECT)):
            self.assertEqual(self.connected, [])
            self.feed(CONNECT[i:i + 1])
        (pending, connect), = self.connected
        self.assertEqual(connect.client_id, "dev-1")
        self.assertEqual(pending.preread, CONNECT)
        self.assertNotIn(self.pending, self.reactor.getReaders())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_pipelined_packets_ride_along_unparsed(self):
        self.feed(CONNECT + PUBLISH + b"\xff\xff")  # even garbage: the worker judges it
        (pending, connect), = self.connected
        self.assertEqual(pending.preread, CONNECT + PUBLISH + b"\xff\xff")
        self.assertEqual(self.closed, [])

    def test_silence_is_closed_at_idle_timeout(self):
        self.feed(CONNECT[:3])
        self.reactor.advance(14.9)
        self.assertEqual(self.closed, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.closed, ["no CONNECT in time"])
        self.assertEqual(self.client.recv(10), b"")  # the client sees the close
        self.assertNotIn(self.pending, self.reactor.getReaders())

    def test_a_connect_over_max_connect_size_is_refused_from_its_header(self):
        big = encode(Connect(client_id="x" * 200, clean_session=True, keepalive=30))
        self.feed(big[:3])  # the header says 200+ bytes: no need to wait for them
        self.assertEqual(len(self.closed), 1)
        self.assertIn("max_connect_size 128", self.closed[0])

    def test_first_packet_not_connect(self):
        self.feed(PUBLISH)
        self.assertIn("not CONNECT", self.closed[0])
        self.assertEqual(self.connected, [])

    def test_bad_protocol_level_gets_its_connack(self):
        bad = bytearray(CONNECT)
        bad[8] = 9  # protocol level 9
        self.feed(bytes(bad))
        self.assertIn("protocol error", self.closed[0])
        self.assertEqual(self.client.recv(10), b"\x20\x02\x00\x01")

    def test_peer_closes_first(self):
        self.client.sendall(CONNECT[:5])
        self.pending.doRead()
        self.client.close()
        self.pending.doRead()
        self.assertEqual(self.closed, ["closed before CONNECT"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_closed_once_only(self):
        self.pending.abandon()
        self.pending.abandon()
        self.reactor.advance(100)
        self.assertEqual(self.closed, ["master stopping"])


class BudgetTests(unittest.TestCase):
    """Half-sent CONNECTs of all sockets together fit broker.max_partial_bytes."""

    def setUp(self):
        from mqttd.broker.budget import PartialInput
        from mqttd.metrics import Metrics
        self.reactor = MemoryReactorClock()
        self.metrics = Metrics()
        self.budget = PartialInput(self.reactor, 200, 30.0, self.metrics)
        self.closed = []

    def pending(self):
        ours, client = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(client.close)
        self.addCleanup(ours.close)
        p = PendingConnect(self.reactor, ours, "127.0.0.9", Limits(max_connect_size=128, idle_timeout=60.0),
                           lambda p, c: None, lambda p, reason: self.closed.append(reason),
                           self.budget)
        return p, client

    def test_the_socket_that_does_not_fit_is_closed_and_the_others_go_on(self):
        big = encode(Connect(client_id="x" * 100, clean_session=True, keepalive=30))
        a, ca = self.pending()
        b, cb = self.pending()
        ca.sendall(big[:10])
        a.doRead()
        self.assertEqual(self.budget.total, len(big))  # counted at its whole size
        cb.sendall(big[:10])
        b.doRead()
        self.assertEqual(self.closed, ["partial input budget"])
        self.assertEqual(self.metrics.mqtt_packets_over_budget, 1)
        ca.sendall(big[10:])
        a.doRead()
        self.assertEqual(self.budget.total, 0)  # released once whole

    def test_a_closed_socket_gives_its_bytes_back(self):
        a, ca = self.pending()
        ca.sendall(CONNECT[:5])
        a.doRead()
        self.assertGreater(self.budget.total, 0)
        a.abandon()
        self.assertEqual(self.budget.total, 0)

    def test_packet_timeout(self):
        a, ca = self.pending()
        ca.sendall(CONNECT[:5])
        a.doRead()
        self.reactor.advance(30.0)
        self.assertEqual(self.closed, ["packet timeout"])
        self.assertEqual(self.metrics.mqtt_packets_timed_out, 1)
