"""The ingestion promise: ack only after the store, in receive order, with backpressure;
a failed store means no ack and a closed connection.
"""
from twisted.internet.defer import fail
from twisted.trial import unittest
from zope.interface import implementer

from mqttd.codec import Connect, Puback, Pubrec, Subscribe, Will
from mqttd.store.sink import IMessageSink
from tests.support.broker import (
    Client,
    Harness,
    ManualAuthenticator,
    ManualStore,
    mixed_publishes,
    pub,
    publishes,
    resent_after_failure,
    two_for_a_subscriber,
)


@implementer(IMessageSink)
class FailingStore:
    """Fails every write at once (a synchronous failure)."""

    def __init__(self):
        self.count = 0

    def store(self, message):
        self.count += 1
        return fail(RuntimeError("store down"))


class StoreThenAckTests(unittest.TestCase):
    def test_every_qos_is_stored_qos0_without_ack(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", b"0", qos=0), pub("t", b"1", qos=1, pid=1),
               pub("t", b"2", qos=2, pid=2))
        self.assertEqual([m.qos for m in store.messages], [0, 1, 2])
        self.assertEqual(c.received(), [])
        for i in range(3):
            store.succeed(i)
        self.assertEqual(c.received(), [Puback(1), Pubrec(2)])

    def test_no_ack_before_store_fires(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=11))
        self.assertEqual(c.received(), [])
        store.succeed(0)
        self.assertEqual(c.received(), [Puback(11)])

    def test_in_memory_store_acks_at_once(self):
        h = Harness()
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertEqual(c.received(), [Puback(1), Puback(2)])
        self.assertEqual(h.broker.metrics.mqtt_publish_stored, 2)

    def test_acks_in_receive_order_when_store_fires_out_of_order(self):
        store = ManualStore()
        c = mixed_publishes(store)
        store.succeed(3)
        store.succeed(2)
        self.assertEqual(c.received(), [])
        store.succeed(1)
        self.assertEqual(c.received(), [])
        store.succeed(0)
        self.assertEqual(c.received(), [Puback(1), Pubrec(2), Puback(3)])

    def test_routing_waits_for_store_and_keeps_order(self):
        store = ManualStore()
        sub, _ = two_for_a_subscriber(store)
        store.succeed(1)
        self.assertEqual(publishes(sub.received()), [])
        store.succeed(0)
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"a", b"b"])

    def test_message_keys_unique(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=1, dup=True))
        keys = [m.key for m in store.messages]
        self.assertEqual(len(set(keys)), 2)


class StoreFailureTests(unittest.TestCase):
    def test_failure_means_no_ack_and_close(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        store.succeed(1)
        store.fail(0)
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 1)
        self.flushLoggedErrors(RuntimeError)

    def test_later_failure_after_acked_head(self):
        store = ManualStore()
        sub, c = two_for_a_subscriber(store, b"ok", b"lost")
        store.succeed(0)
        store.fail(1)
        self.assertEqual(c.received(), [Puback(1)])
        self.assertTrue(c.closed)
        c.lose()
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"ok"])
        self.flushLoggedErrors(RuntimeError)

    def test_synchronous_failure(self):
        h = Harness(store=FailingStore())
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.store.count, 1)  # nothing after the failure is handled
        self.flushLoggedErrors(RuntimeError)

    def test_store_failure_publishes_will(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c", will=Will("w", b"bye"))
        c.send(pub("t", qos=1, pid=1))
        store.fail(0)
        self.assertEqual([m.topic for m in store.messages], ["t", "w"])
        self.flushLoggedErrors(RuntimeError)

    def test_late_success_after_close_sends_nothing(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1))
        c.lose()
        store.succeed(0)
        self.assertEqual(c.received(), [])

    def test_failed_qos2_is_stored_again_on_retransmit(self):
        store = ManualStore()
        again = resent_after_failure(store, lambda: store.fail(0))
        self.assertEqual(len(store.calls), 2)
        store.succeed(1)
        self.assertEqual(again.received(), [Pubrec(7)])
        self.flushLoggedErrors(RuntimeError)


class BackpressureTests(unittest.TestCase):
    def test_pause_at_max_inflight_resume_below(self):
        store = ManualStore()
        h = Harness(store=store, max_inflight=2)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1))
        self.assertFalse(c.paused)
        c.send(pub("t", qos=1, pid=2))
        self.assertTrue(c.paused)
        store.succeed(1)  # not the head: still two waiting for their ack
        self.assertTrue(c.paused)
        store.succeed(0)
        self.assertFalse(c.paused)
        self.assertEqual(c.received(), [Puback(1), Puback(2)])

    def test_keepalive_waits_while_we_do_not_read(self):
        """A full window stops our reads, so the client's PINGREQs wait unread: that
        silence is not the client's. Keepalive counts again from the resume."""
        store = ManualStore()
        h = Harness(store=store, max_inflight=2)
        watcher = h.client("watcher")
        watcher.send(Subscribe(1, (("status/#", 1),)))
        watcher.received()
        c = h.client("dev", keepalive=4, will=Will("status/dev", b"offline", 1))
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.paused)
        h.clock.advance(20.0)  # 1.5 x keepalive is 6 s
        self.assertFalse(c.closed)
        store.succeed(0)
        store.succeed(1)
        self.assertEqual(c.received(), [Puback(1), Puback(2)])
        h.clock.advance(5.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.2)  # 6 s of real silence after we read again
        self.assertTrue(c.closed)
        self.assertEqual(len(store.messages), 3)  # and now the will, rightly

    def test_qos0_counts_too(self):
        store = ManualStore()
        h = Harness(store=store, max_inflight=2)
        c = h.client("c")
        c.send(pub("t"), pub("t"))
        self.assertTrue(c.paused)
        store.succeed(0)
        self.assertFalse(c.paused)

    def test_auth_pause_and_inflight_pause_combine(self):
        store = ManualStore()
        auth = ManualAuthenticator()
        h = Harness(store=store, authenticator=auth, max_inflight=1)
        c = Client(h)
        c.send(Connect("c"), pub("t", qos=1, pid=1))
        self.assertTrue(c.paused)
        auth.pending[0].callback(0)
        self.assertTrue(c.paused)  # auth done, but the store holds the window
        store.succeed(0)
        self.assertFalse(c.paused)
