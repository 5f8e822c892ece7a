"""The ingestion promise: ack only after the store, in receive order, with backpressure."""
from twisted.internet.defer import fail
from twisted.trial import unittest
from zope.interface import implementer

from mqttd.codec import Connect, Puback, Pubcomp, Pubrec, Pubrel, Subscribe, Will
from mqttd.store.interface import IMessageStore
from tests.test_broker import (
    Client,
    Harness,
    ManualAuthenticator,
    ManualStore,
    pub,
    publishes,
)


@implementer(IMessageStore)
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
        self.assertEqual(h.broker.stored, 2)

    def test_acks_in_receive_order_when_store_fires_out_of_order(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=0), pub("t", qos=2, pid=2),
               pub("t", qos=1, pid=3))
        store.succeed(3)
        store.succeed(2)
        self.assertEqual(c.received(), [])
        store.succeed(1)
        self.assertEqual(c.received(), [])
        store.succeed(0)
        self.assertEqual(c.received(), [Puback(1), Pubrec(2), Puback(3)])

    def test_routing_waits_for_store_and_keeps_order(self):
        store = ManualStore()
        h = Harness(store=store)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"a", qos=1, pid=1), pub("t", b"b", qos=1, pid=2))
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
        self.assertEqual(h.broker.store_failures, 1)
        self.flushLoggedErrors(RuntimeError)

    def test_later_failure_after_acked_head(self):
        store = ManualStore()
        h = Harness(store=store)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        c = h.client("c")
        c.send(pub("t", b"ok", qos=1, pid=1), pub("t", b"lost", qos=1, pid=2))
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
        h = Harness(store=store)
        c = h.client("dev", clean=False)
        c.send(pub("t", b"v", qos=2, pid=7))
        store.fail(0)
        c.lose()
        again = Client(h)
        again.connect("dev", clean=False)
        again.send(pub("t", b"v", qos=2, pid=7, dup=True))
        self.assertEqual(len(store.calls), 2)
        store.succeed(1)
        self.assertEqual(again.received(), [Pubrec(7)])
        self.flushLoggedErrors(RuntimeError)


class Qos2InboundTests(unittest.TestCase):
    def test_duplicate_answered_not_stored_twice(self):
        store = ManualStore()
        h = Harness(store=store)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        c = h.client("c")
        c.send(pub("t", b"v", qos=2, pid=5))
        store.succeed(0)
        self.assertEqual(c.received(), [Pubrec(5)])
        c.send(pub("t", b"v", qos=2, pid=5, dup=True))
        self.assertEqual(c.received(), [Pubrec(5)])
        self.assertEqual(len(store.calls), 1)
        self.assertEqual(len(publishes(sub.received())), 1)
        self.assertEqual(h.broker.duplicates, 1)
        c.send(Pubrel(5))
        self.assertEqual(c.received(), [Pubcomp(5)])
        c.send(pub("t", b"next", qos=2, pid=5))  # id free again: a new message
        self.assertEqual(len(store.calls), 2)

    def test_duplicate_while_original_pending_acked_after_it(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=2, pid=5), pub("t", qos=2, pid=5, dup=True))
        self.assertEqual(len(store.calls), 1)
        self.assertEqual(c.received(), [])
        store.succeed(0)
        self.assertEqual(c.received(), [Pubrec(5), Pubrec(5)])

    def test_awaiting_pubrel_survives_reconnect(self):
        h = Harness()
        c = h.client("dev", clean=False)
        c.send(pub("t", qos=2, pid=9))
        self.assertEqual(c.received(), [Pubrec(9)])
        c.lose()
        again = Client(h)
        again.connect("dev", clean=False)
        again.send(pub("t", qos=2, pid=9, dup=True))
        self.assertEqual(again.received(), [Pubrec(9)])
        self.assertEqual(len(h.store.messages), 1)
        again.send(Pubrel(9))
        self.assertEqual(again.received(), [Pubcomp(9)])

    def test_pubrel_for_unknown_id_gets_pubcomp(self):
        h = Harness()
        c = h.client("c")
        c.send(Pubrel(42))
        self.assertEqual(c.received(), [Pubcomp(42)])


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
