"""The broker over ISubmittingMessageSink (no Deferreds), the ``submitter`` adapter,
and the ``Message`` value.
"""
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.codec import Connect, Puback, Pubrec
from mqttd.store.sink import ISubmittingMessageSink, Message, StoreRejected, submitter
from mqttd.store.memory import InMemorySink
from tests.support.broker import (
    Client,
    Harness,
    ManualAuthenticator,
    ManualStore,
    SubmittingStore,
    count_writes,
    mixed_publishes,
    pub,
    publishes,
    resent_after_failure,
    two_for_a_subscriber,
)


class SubmitSeamTests(unittest.TestCase):
    """The broker over ISubmittingMessageSink: the same promise without Deferreds."""

    def two_publishes(self, **config):
        """A broker on a SubmittingStore, and a client that sent two QoS 1 messages."""
        store = SubmittingStore()
        h = Harness(store=store, **config)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        return store, h, c

    def test_group_settled_at_once_acks_in_one_write_in_order(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(*[pub("t", qos=1, pid=i) for i in range(1, 6)])
        writes = count_writes(c)
        self.assertEqual(c.received(), [])
        self.assertEqual(len({id(n) for _, n, _ in store.calls}), 1)  # one notify object
        store.settle([0, 1, 2, 3, 4])
        self.assertEqual(c.received(), [Puback(i) for i in range(1, 6)])
        self.assertEqual(len(writes), 1)
        self.assertEqual(h.broker.metrics.mqtt_publish_stored, 5)

    def test_out_of_order_groups_ack_in_receive_order(self):
        store = SubmittingStore()
        c = mixed_publishes(store)
        store.settle([2, 3])
        self.assertEqual(c.received(), [])
        store.settle([0, 1])
        self.assertEqual(c.received(), [Puback(1), Pubrec(2), Puback(3)])

    def test_failed_group_sends_no_ack_and_closes(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2), pub("t", qos=1, pid=3))
        store.settle([1, 2])  # committed, but behind the head
        store.settle([0], Failure(StoreRejected("ack timeout")))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 1)
        self.assertEqual(h.broker.metrics.mqtt_publish_stored, 2)

    def test_received_is_stored_plus_not_stored_plus_pending_at_every_step(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        metrics = h.broker.metrics

        def figures():
            received = metrics.mqtt_publish_received
            parts = (metrics.mqtt_publish_stored, metrics.mqtt_publish_not_stored,
                     metrics.value("mqtt_publish_pending"))
            self.assertEqual(received, sum(parts))
            return (received, *parts)
        c.send(*[pub("t", qos=1, pid=i) for i in range(1, 5)])
        self.assertEqual(figures(), (4, 0, 0, 4))  # every one awaits the sink
        self.assertEqual(len(store.calls), 4)
        store.settle([0, 1])
        self.assertEqual(figures(), (4, 2, 0, 2))
        store.settle([2, 3], Failure(StoreRejected("ack timeout")))
        self.assertEqual(figures(), (4, 2, 2, 0))

    def test_failure_of_a_whole_group_counts_each(self):
        store, h, c = self.two_publishes()
        store.settle([0, 1], Failure(StoreRejected("refused")))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 2)

    def test_late_group_after_close_sends_nothing(self):
        store, h, c = self.two_publishes()
        c.lose()
        store.settle([0, 1])
        self.assertEqual(c.received(), [])

    def test_failed_qos2_is_stored_again_on_retransmit(self):
        store = SubmittingStore()
        again = resent_after_failure(
            store, lambda: store.settle([0], Failure(StoreRejected("ack timeout"))))
        self.assertEqual(len(store.calls), 2)
        store.settle([1])
        self.assertEqual(again.received(), [Pubrec(7)])

    def test_synchronous_refusal_stops_the_read(self):
        class Refusing(SubmittingStore):
            def submit(self, message, notify, token):
                super().submit(message, notify, token)
                notify([token], Failure(StoreRejected("overload")))

        store = Refusing()
        h = Harness(store=store)
        c = h.client("dev", clean=False)
        c.send(pub("t", qos=2, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(len(store.calls), 1)
        c.lose()
        self.assertEqual(h.broker.sessions["dev"].inbound_qos2, set())  # id released

    def test_backpressure(self):
        store, h, c = self.two_publishes(max_inflight=2)
        self.assertTrue(c.paused)
        store.settle([1])
        self.assertTrue(c.paused)
        store.settle([0])
        self.assertFalse(c.paused)

    def test_routing_waits_for_the_group_and_keeps_order(self):
        store = SubmittingStore()
        sub, _ = two_for_a_subscriber(store)
        self.assertEqual(publishes(sub.received()), [])
        store.settle([0, 1])
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"a", b"b"])

    def test_received_at_is_the_time_of_the_read(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        h.clock.advance(7.25)
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertEqual([m.received_at for m in store.messages], [7.25, 7.25])

    def test_received_at_of_publishes_held_during_auth(self):
        store = SubmittingStore()
        auth = ManualAuthenticator()
        h = Harness(store=store, authenticator=auth)
        c = Client(h)
        c.send(Connect("c"), pub("t", qos=1, pid=1))
        h.clock.advance(3.0)
        auth.pending[0].callback(0)
        self.assertEqual([m.received_at for m in store.messages], [3.0])


class SubmitterTests(unittest.TestCase):
    """``submitter(store)``: a store's own submit, or an adapter over store()."""

    def test_submitting_store_is_used_directly(self):
        store = SubmittingStore()
        self.assertEqual(submitter(store), store.submit)

    def test_deferred_store_is_adapted(self):
        store = ManualStore()
        submit = submitter(store)
        got = []
        submit("m0", lambda tokens, failure: got.append((tokens, failure)), "t0")
        submit("m1", lambda tokens, failure: got.append((tokens, failure)), "t1")
        self.assertEqual(store.messages, ["m0", "m1"])
        store.succeed(1)
        store.fail(0)
        self.assertEqual(got[0], (["t1"], None))
        self.assertEqual(got[1][0], ["t0"])
        self.assertTrue(got[1][1].check(RuntimeError))

    def test_in_memory_store_settles_before_returning(self):
        store = InMemorySink()
        got = []
        store.submit("m", lambda tokens, failure: got.append((tokens, failure)), "t")
        self.assertEqual(got, [(["t"], None)])
        self.assertEqual(list(store.messages), ["m"])
        self.assertEqual(store.count, 1)
        self.assertTrue(ISubmittingMessageSink.providedBy(store))


class MessageValueTests(unittest.TestCase):
    """Message stays an immutable value after leaving attrs (a NamedTuple now)."""

    fields = ("k-1", "dev", None, "t/1", b"p", 1, False, 1.5)

    def test_equality_only_between_messages(self):
        a, b = Message(*self.fields), Message(*self.fields)
        self.assertEqual(a, b)
        self.assertFalse(a != b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, tuple(self.fields))
        self.assertNotEqual(tuple(self.fields), a)
        self.assertTrue(a != tuple(self.fields))
        self.assertNotEqual(a, Message(*self.fields[:-1], 2.5))

    def test_immutable_with_keyword_repr(self):
        m = Message(*self.fields)
        with self.assertRaises(AttributeError):
            m.key = "other"
        self.assertEqual(repr(m), "Message(key='k-1', client_id='dev', username=None, "
                                  "topic='t/1', payload=b'p', qos=1, retain=False, "
                                  "received_at=1.5)")

    def test_broker_builds_equal_messages(self):
        h = Harness()
        m = h.broker.make_message("dev", None, "t/1", b"p", 1, False, 1.5)
        self.assertIs(type(m), Message)
        self.assertEqual(m, Message(m.key, "dev", None, "t/1", b"p", 1, False, 1.5))
