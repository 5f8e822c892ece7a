"""No client can pin memory with a half-sent packet.

``max_connect_size`` caps what an unauthenticated client can make us hold,
``packet_timeout`` ends a packet that never completes (whatever the keepalive),
``max_keepalive`` bounds silence, and ``max_partial_bytes`` bounds the packets being
read across all connections.
"""
from twisted.trial import unittest

from mqttd.codec import Connect, Pingreq, Puback, Publish, Will, encode
from tests.support.broker import Client, Harness, ManualStore, pub
from tests.support.logs import capture_logs, disconnect_reasons


def publish_bytes(size, qos=0, pid=None):
    """A PUBLISH of about ``size`` bytes."""
    return encode(Publish("t", b"p" * size, qos, False, False, pid))


class MaxConnectSizeTests(unittest.TestCase):
    def test_a_big_connect_closes_the_connection_before_its_body_is_read(self):
        events = capture_logs(self)
        h = Harness(max_connect_size=1024)
        c = Client(h)
        data = encode(Connect("c", will=Will("w", b"x" * 2000)))
        c.send(data[:4])  # the header alone says it is too big
        self.assertTrue(c.closed)
        self.assertEqual(h.broker.metrics.mqtt_protocol_errors, 1)
        [event] = [e for e in events if e.get("reason") == "protocol error"]
        self.assertIn("max_connect_size 1024", event["detail"])
        # Once connected, packets up to max_packet_size are read.
        other = h.client("other")
        other.send(publish_bytes(100_000, qos=1, pid=1))
        self.assertEqual(other.received(), [Puback(1)])

    def test_the_default_fits_a_64k_will_and_refuses_more_than_128k(self):
        h = Harness()
        # The longest will message MQTT allows, and 60 kB of client id and will topic.
        connack = Client(h).connect("c" * 30_000, will=Will("w" * 30_000, b"x" * 65535))
        self.assertEqual(connack.return_code, 0)
        c = Client(h)
        c.send(encode(Connect("c" * 65535, will=Will("w" * 2000, b"x" * 65535)))[:5])
        self.assertTrue(c.closed)


class PacketTimeoutTests(unittest.TestCase):
    def test_a_publish_stalled_halfway_is_closed_at_the_deadline(self):
        """keepalive 0: nothing else would ever close it."""
        events = capture_logs(self)
        h = Harness(packet_timeout=30.0)
        c = h.client("c", keepalive=0)
        data = publish_bytes(900_000)
        c.send(data[:450_000])
        h.clock.advance(29.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.2)
        self.assertTrue(c.closed)
        self.assertEqual(disconnect_reasons(events), ["packet timeout"])
        self.assertEqual(h.broker.metrics.mqtt_packets_timed_out, 1)
        c.lose()
        self.assertEqual(h.broker.partial_input.total, 0)

    def test_trickling_bytes_does_not_extend_the_deadline(self):
        h = Harness(packet_timeout=30.0)
        c = h.client("c", keepalive=0)
        data = publish_bytes(1000)
        for i in range(29):
            c.send(data[i:i + 1])
            h.clock.advance(1)
        self.assertFalse(c.closed)
        c.send(data[29:30])
        h.clock.advance(1.1)
        self.assertTrue(c.closed)

    def test_each_packet_gets_its_own_deadline(self):
        """A steady stream of big packets, each arriving whole in time, is never closed,
        though some read always leaves one unfinished."""
        h = Harness(packet_timeout=30.0)
        c = h.client("c", keepalive=0)
        data = publish_bytes(10_000) * 20
        step = len(data) // 100 + 1
        for i in range(0, len(data), step):
            c.send(data[i:i + step])
            h.clock.advance(5)  # a packet takes about 25 s: in time
        self.assertFalse(c.closed)
        self.assertEqual(h.broker.partial_input.total, 0)
        h.clock.advance(100)
        self.assertFalse(c.closed)

    def test_a_connect_stalled_halfway_is_closed_at_the_deadline(self):
        events = capture_logs(self)
        h = Harness(packet_timeout=5.0, idle_timeout=60.0)
        c = Client(h)
        c.send(encode(Connect("c", will=Will("w", b"x" * 1000)))[:500])
        h.clock.advance(5.1)
        self.assertTrue(c.closed)
        self.assertEqual(disconnect_reasons(events), ["packet timeout"])

    def test_not_counted_while_the_broker_itself_does_not_read(self):
        """A full window (the store is behind) stops our reading: the client cannot
        finish its packet then, and it must not be closed for it."""
        store = ManualStore()
        h = Harness(store=store, max_inflight=1, packet_timeout=10.0)
        c = h.client("c", keepalive=0)
        data = publish_bytes(1000, qos=1, pid=2)
        c.send(pub("t", b"1", qos=1, pid=1), data[:500])
        self.assertTrue(c.paused)
        h.clock.advance(25)
        self.assertFalse(c.closed)
        store.succeed(0)  # reading again: a fresh deadline
        self.assertFalse(c.paused)
        h.clock.advance(9)
        self.assertFalse(c.closed)
        h.clock.advance(11)
        self.assertTrue(c.closed)

    def test_a_full_socket_is_the_clients_silence(self):
        h = Harness(packet_timeout=10.0)
        c = h.client("c", keepalive=0)
        c.send(publish_bytes(1000)[:500])
        c.transport.producer.pauseProducing()  # it stopped reading what we write
        h.clock.advance(10.1)
        self.assertTrue(c.closed)


class MaxKeepaliveTests(unittest.TestCase):
    def test_a_keepalive_above_the_bound_gets_the_bound(self):
        h = Harness(max_keepalive=100)
        c = h.client("c", keepalive=1000)
        h.clock.advance(149.9)
        c.send(Pingreq())  # silence counts from the last packet, as always
        h.clock.advance(149.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.2)
        self.assertTrue(c.closed)
        below = h.client("below", keepalive=10)  # below the bound: the client's own
        h.clock.advance(15.1)
        self.assertTrue(below.closed)


class PartialBudgetTests(unittest.TestCase):
    def setUp(self):
        self.events = capture_logs(self)
        self.h = Harness(max_packet_size=60_000, max_partial_bytes=100_000)

    def test_a_packet_that_does_not_fit_closes_its_own_connection(self):
        a, b = self.h.client("a"), self.h.client("b")
        first = publish_bytes(59_000)
        a.send(first[:100])  # counts at its whole size, from its header
        self.assertEqual(self.h.broker.partial_input.total, len(first))
        b.send(publish_bytes(50_000)[:100])
        self.assertTrue(b.closed)
        self.assertFalse(a.closed)
        self.assertEqual(disconnect_reasons(self.events), ["partial input budget"])
        self.assertEqual(self.h.broker.metrics.mqtt_packets_over_budget, 1)
        b.lose()
        a.send(first[100:], pub("t", b"done", qos=1, pid=1))  # the one being read finishes
        self.assertEqual(a.received(), [Puback(1)])
        self.assertEqual(self.h.broker.partial_input.total, 0)
        c = self.h.client("c")  # and the budget is there again
        c.send(publish_bytes(50_000)[:100])
        self.assertFalse(c.closed)

    def test_a_connection_lost_mid_packet_gives_its_bytes_back(self):
        a = self.h.client("a")
        a.send(publish_bytes(59_000)[:30_000])
        a.lose()
        self.assertEqual(self.h.broker.partial_input.total, 0)
        b = self.h.client("b")
        b.send(publish_bytes(59_000)[:100])
        self.assertFalse(b.closed)

    def test_whole_packets_in_one_read_use_no_budget(self):
        a = self.h.client("a")
        a.send(*[pub("t", b"x" * 50_000) for _ in range(5)])
        self.assertEqual(self.h.broker.partial_input.total, 0)
        self.assertFalse(a.closed)

    def test_the_budget_is_shared_with_unauthenticated_connections(self):
        a = self.h.client("a")
        a.send(publish_bytes(59_000)[:100])
        stranger = Client(self.h)
        stranger.send(encode(Connect("s", will=Will("w", b"x" * 50_000)))[:100])
        self.assertTrue(stranger.closed)
        self.assertFalse(a.closed)
