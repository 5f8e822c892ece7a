"""Overload pauses publishers instead of closing them (issue 11, point 7).

Past ``webhook.max_pending`` / ``max_pending_bytes`` the webhook client says it is full
(``Pressure``); the broker stops reading from each connection that publishes meanwhile
and resumes them once the client has drained. A paused client is closed only at its ack
deadline, and keepalive does not count the silence the broker causes.

The broker side runs the real Broker and WebhookSink on a ``task.Clock``, connections
on StringTransport, and the webhook as a twisted.web resource (through treq's StubTreq)
that holds every request until the test answers it (tests/support/pressure.py).
"""
import json

from twisted.trial import unittest

from mqttd.broker.pressure import PublisherThrottle
from mqttd.codec import Puback, Suback, Subscribe
from mqttd.config import ConfigError, parse_config
from mqttd.store.sink import Message
from mqttd.store.pressure import Pressure
from tests.support.broker import pub
from tests.support.pressure import BrokerHarness, StoreHarness



def message(n, payload=b"p", topic="t"):
    return Message(f"k-{n}", "dev", None, topic, payload, 1, False, 1.0)


class StorePressureTests(unittest.TestCase):
    def test_past_max_pending_the_store_says_full_and_still_takes_messages(self):
        """Up to the hard ceiling (125 %): those messages were already read."""
        h = StoreHarness(max_pending=8)
        h.submit(*[message(n) for n in range(7)])
        self.assertEqual((h.store.pressure.full, h.events.heard), (False, []))
        h.submit(message(7))
        self.assertEqual((h.store.pressure.full, h.events.heard), (True, ["full"]))
        h.submit(message(8), message(9))  # 10 = 8 + 8 // 4: still taken
        self.assertEqual((h.store.metrics.webhook_pending, h.outcomes), (10, []))
        h.submit(message(10))
        self.assertEqual(h.outcomes, [("k-10", "overload")])
        self.assertEqual((h.store.metrics.webhook_overloads, h.store.metrics.webhook_rejected["overload"]), (1, 1))

    def test_drained_at_90_percent_on_the_next_turn(self):
        h = StoreHarness(max_pending=10, batch_size=5, pool_size=2)
        h.submit(*[message(n) for n in range(10)])  # full; two batches of 5 in flight
        h.send()
        self.assertEqual(len(h.webhook.held), 2)
        request, rows = h.webhook.held.pop(0)  # the first batch commits: 5 left = 50 %
        request.write(json.dumps({"received": 5, "inserted": 5, "duplicates": 0}).encode())
        request.finish()
        h.http.flush()
        self.assertEqual((h.store.metrics.webhook_pending, h.events.heard), (5, ["full"]))  # not from a settle
        h.clock.advance(0)
        self.assertEqual((h.store.pressure.full, h.events.heard), (False, ["full", "drained"]))

    def test_not_drained_above_the_low_water_mark(self):
        h = StoreHarness(max_pending=10, batch_size=1)
        h.submit(*[message(n) for n in range(10)])
        h.send()
        request, _ = h.webhook.held.pop(0)  # 9 left: 90 % is drained, 91 % would not be
        request.write(b'{"received": 1, "inserted": 1, "duplicates": 0}')
        request.finish()
        h.http.flush()
        h.clock.advance(0)
        self.assertEqual(h.events.heard, ["full", "drained"])
        h = StoreHarness(max_pending=20, batch_size=1)
        h.submit(*[message(n) for n in range(20)])
        h.send()
        request, _ = h.webhook.held.pop(0)  # 19 of 20 left: above 18
        request.write(b'{"received": 1, "inserted": 1, "duplicates": 0}')
        request.finish()
        h.http.flush()
        h.clock.advance(0)
        self.assertEqual(h.events.heard, ["full"])

    def test_max_pending_bytes_counts_payload_and_topic(self):
        h = StoreHarness(max_pending_bytes=1000)
        h.submit(*[message(n, payload=b"x" * 297, topic="abc") for n in range(3)])
        self.assertEqual((h.store.metrics.webhook_pending_bytes, h.store.pressure.full), (900, False))
        h.submit(message(3, payload=b"x" * 97, topic="abc"))
        self.assertEqual((h.store.metrics.webhook_pending_bytes, h.store.pressure.full), (1000, True))
        h.submit(message(4, payload=b"x" * 240, topic="abc"))  # 1000 < 1250: taken
        h.submit(message(5))  # 1243 < 1250: taken
        h.submit(message(6))  # 1245: taken
        h.submit(message(7, payload=b"x" * 10))  # 1247: taken; now 1258 >= 1250
        h.submit(message(8))
        self.assertEqual(h.outcomes, [("k-8", "overload")])
        h.send()
        self.assertEqual(h.answer(), 8)
        self.assertEqual((h.store.metrics.webhook_pending, h.store.metrics.webhook_pending_bytes), (0, 0))
        h.clock.advance(0)
        self.assertEqual(h.events.heard, ["full", "drained"])

    def test_pending_bytes_are_released_by_every_outcome(self):
        """Committed, refused, timed out, stopped: pending_bytes returns to 0."""
        h = StoreHarness(max_pending_bytes=10_000)
        h.submit(message(0, payload=b"a" * 100))
        h.send()
        h.answer()
        h.submit(message(1, payload=b"b" * 100))
        h.send()
        h.clock.advance(10.0)  # its ack timeout, in flight
        h.submit(message(2, payload=b"c" * 100))
        h.store.stop()
        self.assertEqual([o for _, o in h.outcomes], ["ok", "ack timeout", "stopping"])
        self.assertEqual((h.store.metrics.webhook_pending, h.store.metrics.webhook_pending_bytes), (0, 0))


class ThrottleTests(unittest.TestCase):
    """PublisherThrottle alone: who is resumed when, and in what order."""

    class Connection:
        def __init__(self, name, log, on_resume=None):
            self.name, self.log, self.on_resume = name, log, on_resume

        def sink_drained(self):
            self.log.append(self.name)
            if self.on_resume is not None:
                self.on_resume()

    def test_first_paused_first_resumed_until_full_again(self):
        pressure = Pressure()
        throttle = PublisherThrottle(pressure)
        log = []
        a = self.Connection("a", log)
        b = self.Connection("b", log, on_resume=pressure.fill)  # fills the sink again
        c = self.Connection("c", log)
        pressure.fill()
        for connection in (a, b, c):
            throttle.hold(connection)
        pressure.drain()
        self.assertEqual((log, len(throttle), throttle.full), (["a", "b"], 1, True))
        pressure.drain()
        self.assertEqual((log, len(throttle)), (["a", "b", "c"], 0))

    def test_a_broken_connection_does_not_keep_the_others_paused(self):
        pressure = Pressure()
        throttle = PublisherThrottle(pressure)
        log = []

        class Broken:
            def sink_drained(self):
                raise RuntimeError("bug")
        pressure.fill()
        throttle.hold(Broken())
        throttle.hold(self.Connection("b", log))
        pressure.drain()
        self.assertEqual(log, ["b"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_no_pressure_never_full(self):
        self.assertFalse(PublisherThrottle(None).full)


class PausedPublisherTests(unittest.TestCase):
    def test_publishers_past_max_pending_are_paused_not_closed(self):
        h = BrokerHarness(max_pending=8, ack_timeout=10.0)
        a, b, c = h.client("a"), h.client("b"), h.client("c")
        a.send(*[pub("t", b"a%d" % i, qos=1, pid=i + 1) for i in range(5)])
        self.assertFalse(a.paused)
        b.send(*[pub("t", b"b%d" % i, qos=1, pid=i + 1) for i in range(5)])  # the 3rd fills it
        c.send(pub("t", b"c0", qos=1, pid=1), pub("t", b"c1", qos=1, pid=2))
        a.send(pub("t", b"a5", qos=1, pid=6))
        self.assertEqual(h.store.metrics.webhook_pending, 10)  # 8, then one more each from c and a
        for client in (a, b, c):
            self.assertTrue(client.paused, client.protocol.client_id)
            self.assertFalse(client.closed, client.protocol.client_id)
        self.assertEqual(h.store.metrics.webhook_rejected, {})

        h.send()
        self.assertEqual(h.answer(), 10)  # commits land: all of them resume
        for client in (a, b, c):
            self.assertFalse(client.paused, client.protocol.client_id)
        self.assertEqual(a.received(), [Puback(i) for i in range(1, 7)])
        self.assertEqual(b.received(), [Puback(1), Puback(2), Puback(3)])
        self.assertEqual(c.received(), [Puback(1)])
        # What the read that paused them still held was submitted on resuming.
        h.send()
        self.assertEqual(h.answer(), 3)
        self.assertEqual(b.received(), [Puback(4), Puback(5)])
        self.assertEqual(c.received(), [Puback(2)])
        self.assertEqual(sorted(row[4] for row in h.webhook.stored),
                         sorted([b"a%d" % i for i in range(6)] + [b"b%d" % i for i in range(5)]
                                + [b"c0", b"c1"]))
        for client in (a, b, c):
            self.assertFalse(client.closed)

    def test_a_paused_publisher_is_closed_only_at_its_ack_timeout(self):
        """Keepalive (here 2 s, so 3 s of silence) does not close it meanwhile: the
        silence is the broker's."""
        h = BrokerHarness(max_pending=2, ack_timeout=10.0)
        a = h.client("a", keepalive=2)
        a.send(*[pub("t", b"%d" % i, qos=1, pid=i + 1) for i in range(3)])
        self.assertTrue(a.paused)
        h.send()  # sent; the webhook never answers
        h.clock.advance(9.9)
        self.assertFalse(a.closed)
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 0)
        h.clock.advance(0.1)  # 10 s: the ack deadline of its messages
        self.assertTrue(a.closed)
        self.assertEqual(a.received(), [])
        self.assertEqual(h.store.metrics.webhook_rejected["ack timeout"], 2)

    def test_keepalive_counts_again_from_the_resume(self):
        h = BrokerHarness(max_pending=1, ack_timeout=30.0)
        a = h.client("a", keepalive=2)
        a.send(pub("t", qos=1, pid=1))
        self.assertTrue(a.paused)
        h.send()
        h.clock.advance(20.0)
        self.assertFalse(a.closed)
        h.answer()  # t=20: resumed
        self.assertEqual((a.paused, a.received()), (False, [Puback(1)]))
        h.clock.advance(2.9)
        self.assertFalse(a.closed)
        h.clock.advance(0.2)  # 3 s of the client's own silence
        self.assertTrue(a.closed)

    def test_subscribers_are_not_paused(self):
        h = BrokerHarness(max_pending=1, ack_timeout=10.0)
        publisher = h.client("p")
        publisher.send(pub("t", qos=1, pid=1))
        self.assertTrue(h.store.pressure.full)
        subscriber = h.client("s")
        subscriber.send(Subscribe(1, (("t", 1),)))
        self.assertEqual(subscriber.received(), [Suback(1, (1,))])
        self.assertFalse(subscriber.paused)

    def test_packets_read_while_paused_wait_in_order(self):
        """A transport may still deliver what one read held (TLS records): it waits
        behind the backlog, and is handled in order once resumed."""
        h = BrokerHarness(max_pending=1, ack_timeout=10.0)
        a = h.client("a")
        a.send(pub("t", b"1", qos=1, pid=1), pub("t", b"2", qos=1, pid=2))
        a.send(pub("t", b"3", qos=1, pid=3))  # delivered although paused
        self.assertEqual(h.store.metrics.webhook_pending, 1)
        for _ in range(3):  # one at a time: each fills the sink again
            self.assertTrue(a.paused)
            h.send()
            h.answer()
        self.assertFalse(a.paused)
        self.assertEqual(a.received(), [Puback(1), Puback(2), Puback(3)])
        self.assertEqual([row[4] for row in h.webhook.stored], [b"1", b"2", b"3"])


class ConfigTests(unittest.TestCase):
    def test_max_pending_bytes(self):
        self.assertEqual(parse_config({}).webhook.max_pending_bytes, 256 * 1024 * 1024)
        self.assertEqual(
            parse_config({"webhook": {"max_pending_bytes": 4096}}).webhook.max_pending_bytes, 4096)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"webhook": {"max_pending_bytes": 10}})
        self.assertEqual(str(caught.exception),
                         "webhook.max_pending_bytes: must be 1024..1099511627776, got 10")
