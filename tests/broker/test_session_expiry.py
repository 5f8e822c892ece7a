"""Persistent sessions expire (``session_expiry``) and are bounded (``max_sessions``)."""
from twisted.internet import task
from twisted.trial import unittest

from mqttd.broker.deadlines import Deadlines
from mqttd.codec import Connack, Connect, Subscribe
from tests.support.broker import Client, Harness, pub, publishes
from tests.support.logs import capture_logs


def persistent_subscriber(h, client_id, topic="t"):
    c = h.client(client_id, clean=False)
    c.send(Subscribe(1, ((topic, 1),)))
    c.received()
    return c


class ExpiryTests(unittest.TestCase):
    def test_an_offline_session_expires_and_its_memory_is_freed(self):
        h = Harness(session_expiry=60.0)
        persistent_subscriber(h, "dev").disconnect()
        publisher = h.client("pub")
        publisher.send(*[pub("t", b"%d" % i, qos=1, pid=i + 1) for i in range(5)])
        session = h.broker.sessions["dev"]
        self.assertEqual(len(session.queue), 5)
        h.clock.advance(59.9)
        self.assertIn("dev", h.broker.sessions)
        h.clock.advance(0.2)
        self.assertNotIn("dev", h.broker.sessions)
        self.assertEqual(len(h.broker.trie), 0)  # its subscription is gone from the trie
        self.assertIsNone(session.queue)  # and its queued messages with it
        self.assertEqual(session.queued_bytes, 0)
        self.assertEqual(h.broker.metrics.mqtt_sessions_expired, 1)
        self.assertEqual(h.broker.stored_sessions.count, 0)
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(False, 0))
        self.assertEqual(publishes(again.received()), [])

    def test_expiry_is_logged(self):
        events = capture_logs(self)
        h = Harness(session_expiry=5.0)
        persistent_subscriber(h, "dev").disconnect()
        h.clock.advance(5.0)
        [event] = [e for e in events if "expired" in e.get("log_format", "")]
        self.assertEqual(event["client_id"], "dev")

    def test_a_client_that_comes_back_in_time_keeps_its_session(self):
        h = Harness(session_expiry=60.0)
        persistent_subscriber(h, "dev").disconnect()
        h.clock.advance(50)
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(True, 0))
        h.clock.advance(100)  # online: no expiry
        self.assertIn("dev", h.broker.sessions)
        again.disconnect()
        h.clock.advance(59)  # counted from the last disconnect
        self.assertIn("dev", h.broker.sessions)
        h.clock.advance(1.1)
        self.assertNotIn("dev", h.broker.sessions)

    def test_expiry_in_disconnect_order_on_one_timer(self):
        # (Log lines unlimited: suppressing them would arm the log limiter's own timer.)
        h = Harness(session_expiry=10_000.0, log_lines_per_ip=1_000_000)
        for i in range(1000):  # d<i> goes offline at i seconds
            persistent_subscriber(h, f"d{i}", topic=f"t/{i}").disconnect()
            h.clock.advance(1)
        # No timer per session: one for all of them (and none of closed connections).
        self.assertEqual(len(h.clock.getDelayedCalls()), 1)
        h.clock.advance(9000.5)
        self.assertEqual(len(h.broker.sessions), 999)
        h.clock.advance(499)
        self.assertEqual(len(h.broker.sessions), 500)
        self.assertNotIn("d499", h.broker.sessions)
        self.assertIn("d500", h.broker.sessions)
        h.clock.advance(500)
        self.assertEqual(h.broker.sessions, {})
        self.assertEqual(len(h.broker.trie), 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_clean_sessions_do_not_expire_or_count(self):
        h = Harness(session_expiry=1.0, max_sessions=1)
        c = h.client("clean")
        h.clock.advance(10)
        self.assertIn("clean", h.broker.sessions)
        self.assertEqual(h.broker.stored_sessions.count, 0)
        h.client("dev", clean=False)  # the one persistent slot
        self.assertEqual(h.broker.stored_sessions.count, 1)
        c.disconnect()

    def test_clean_connect_over_a_stored_session_frees_its_slot(self):
        h = Harness(max_sessions=1)
        persistent_subscriber(h, "dev").disconnect()
        h.client("dev", clean=True).disconnect()
        self.assertEqual(h.broker.stored_sessions.count, 0)
        self.assertEqual(h.broker.stored_sessions.offline, 0)


class MaxSessionsTests(unittest.TestCase):
    def test_a_new_session_past_the_bound_evicts_the_one_offline_longest(self):
        h = Harness(max_sessions=3)
        for name in ("a", "b", "c"):
            persistent_subscriber(h, name).disconnect()
            h.clock.advance(1)
        Client(h).connect("b", clean=False)  # b is back: online
        h.client("d", clean=False)
        self.assertEqual(sorted(h.broker.sessions), ["b", "c", "d"])
        self.assertEqual(h.broker.metrics.mqtt_sessions_evicted, 1)
        h.client("e", clean=False)
        self.assertEqual(sorted(h.broker.sessions), ["b", "d", "e"])
        self.assertEqual(h.broker.stored_sessions.count, 3)
        self.assertEqual(len(h.broker.trie), 1)  # b's "t"; a's and c's are gone

    def test_refused_with_server_unavailable_when_every_session_is_online(self):
        events = capture_logs(self)
        h = Harness(max_sessions=2)
        h.client("a", clean=False)
        h.client("b", clean=False)
        c = Client(h)
        c.send(Connect("c", clean_session=False))
        self.assertEqual(c.received(), [Connack(False, 0x03)])
        self.assertTrue(c.closed)
        self.assertEqual(sorted(h.broker.sessions), ["a", "b"])
        self.assertEqual(h.broker.metrics.mqtt_sessions_refused, 1)
        self.assertEqual(h.broker.metrics.mqtt_connect_refused, {"max sessions": 1})
        reasons = [e["reason"] for e in events
                   if e.get("log_format", "").startswith("disconnect")]
        self.assertEqual(reasons, ["max sessions"])
        # A clean session still connects, and so does a stored one coming back.
        self.assertEqual(Client(h).connect("x", clean=True), Connack(False, 0))

    def test_a_stored_session_reconnects_at_the_bound(self):
        h = Harness(max_sessions=1)
        persistent_subscriber(h, "dev").disconnect()
        self.assertEqual(Client(h).connect("dev", clean=False), Connack(True, 0))
        self.assertEqual(h.broker.metrics.mqtt_sessions_evicted, 0)

    def test_a_takeover_needs_no_new_slot(self):
        h = Harness(max_sessions=1)
        first = h.client("dev", clean=False)
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(True, 0))
        self.assertTrue(first.closed)
        self.assertEqual(h.broker.metrics.mqtt_sessions_refused, 0)


class DeadlinesTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.expired = []
        self.deadlines = Deadlines(self.clock, 10.0, self.expired.append)

    def test_keys_expire_oldest_first_at_their_own_time(self):
        a, b = object(), object()
        self.deadlines.add(a)
        self.clock.advance(3)
        self.deadlines.add(b)
        self.clock.advance(7)
        self.assertEqual(self.expired, [a])
        self.clock.advance(2.9)
        self.assertEqual(self.expired, [a])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [a, b])
        self.assertEqual(len(self.deadlines), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_discard_and_restart(self):
        a, b = object(), object()
        self.deadlines.add(a)
        self.deadlines.add(b)
        self.clock.advance(5)
        self.deadlines.discard(a)
        self.deadlines.add(b)  # again: 10 s from now
        self.clock.advance(5)
        self.assertEqual(self.expired, [])
        self.clock.advance(5)
        self.assertEqual(self.expired, [b])

    def test_a_key_added_again_while_expiring_is_due_later(self):
        a, b = object(), object()

        def renew(key):
            self.expired.append(key)
            if key is a and self.expired.count(a) == 1:
                self.deadlines.add(a)

        self.deadlines = Deadlines(self.clock, 10.0, renew)
        self.deadlines.add(a)
        self.clock.advance(1)
        self.deadlines.add(b)
        self.clock.advance(9)
        self.assertEqual(self.expired, [a])
        self.clock.advance(1)  # b is due at 11, before a's renewed deadline at 20
        self.assertEqual(self.expired, [a, b])
        self.clock.advance(9)
        self.assertEqual(self.expired, [a, b, a])

    def test_a_failing_key_does_not_stop_the_others(self):
        a, b = object(), object()

        def expire(key):
            if key is a:
                raise RuntimeError("boom")
            self.expired.append(key)

        self.deadlines = Deadlines(self.clock, 10.0, expire)
        self.deadlines.add(a)
        self.deadlines.add(b)
        self.clock.advance(10)
        self.assertEqual(self.expired, [b])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
