"""The ingestion promise: ack only after the store, in receive order, with backpressure."""
from twisted.internet.defer import fail
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from mqttd.codec import Connect, Disconnect, Puback, Pubcomp, Pubrec, Pubrel, Subscribe, Will
from mqttd.store.sink import (
    IMessageSink,
    ISubmittingMessageSink,
    Message,
    StoreRejected,
    submitter,
)
from mqttd.store.memory import InMemorySink
from tests.support.broker import (
    Client,
    Harness,
    ManualAuthenticator,
    ManualStore,
    SubmittingStore,
    count_writes,
    pub,
    publishes,
)


@implementer(IMessageSink)
class FailingStore:
    """Fails every write at once (a synchronous failure)."""

    def __init__(self):
        self.count = 0

    def store(self, message):
        self.count += 1
        return fail(RuntimeError("store down"))


def mixed_publishes(store):
    """A client of a broker on ``store`` that sent QoS 1, 0, 2, 1 (ids 1, -, 2, 3): store
    entries 0..3, acks Puback(1), Pubrec(2), Puback(3) in that order."""
    c = Harness(store=store).client("c")
    c.send(pub("t", qos=1, pid=1), pub("t", qos=0), pub("t", qos=2, pid=2),
           pub("t", qos=1, pid=3))
    return c


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
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 1)
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
        self.assertEqual(h.broker.metrics.mqtt_qos2_retransmits, 1)
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


class AfterCloseTests(unittest.TestCase):
    """A message committed after its connection closed gets no ack, but it is in the
    database, so it reaches subscribers and the retained store (a persistent client's
    QoS 2 retransmission then only completes the flow: exactly once)."""

    def setUp(self):
        self.store = ManualStore()
        self.h = Harness(store=self.store)
        self.sub = self.h.client("sub")
        self.sub.send(Subscribe(1, (("t/#", 2),)))
        self.sub.received()

    def delivered(self):
        return [m.payload for m in publishes(self.sub.received())]

    def test_publish_then_disconnect_is_routed_and_retained(self):
        """mosquitto_pub -r: CONNECT, PUBLISH, DISCONNECT before the commit lands."""
        c = Client(self.h)
        c.send(Connect("lamp", True, 0, None, None, None),
               pub("t/lamp", b"on", qos=0, retain=True), Disconnect())
        c.lose()
        self.assertEqual((self.delivered(), self.h.broker.retained.get("t/lamp")), ([], None))
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"on"])
        self.assertEqual(self.h.broker.retained.get("t/lamp").payload, b"on")

    def test_clean_session_routes_every_committed_qos_in_receive_order(self):
        c = self.h.client("dev")
        c.send(pub("t/1", b"a", qos=1, pid=1), pub("t/1", b"b", qos=2, pid=2),
               pub("t/1", b"c", qos=0), pub("t/1", b"d", qos=1, pid=3))
        c.lose()
        self.store.succeed(2)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])  # "a" first: still waiting for it
        self.store.fail(0)  # never stored: never routed, and no longer in the way
        self.assertEqual(self.delivered(), [b"b", b"c"])
        self.store.succeed(3)
        self.assertEqual(self.delivered(), [b"d"])
        self.assertEqual(c.received(), [])  # no acks after the close
        self.flushLoggedErrors(RuntimeError)

    def test_persistent_session_routes_what_commits_after_the_close(self):
        """publish(qos=1, retain=True), then disconnect() without waiting for the PUBACK:
        a client that never comes back must not leave data stored and never delivered."""
        c = Client(self.h)
        c.send(Connect("lamp", False, 60, None, None, None),
               pub("t/lamp", b"on", qos=1, pid=1, retain=True), pub("t/lamp", b"q0"),
               Disconnect())
        c.lose()
        self.store.succeed(0)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [b"on", b"q0"])
        self.assertEqual(self.h.broker.retained.get("t/lamp").payload, b"on")

    def drop_with(self, *packets):
        """A persistent client "dev" sends ``packets``, then its connection drops."""
        c = self.h.client("dev", clean=False)
        c.send(*packets)
        c.lose()

    def back_with(self, *packets):
        """ "dev" connects again, persistent, and sends ``packets``."""
        again = Client(self.h)
        again.connect("dev", clean=False)
        again.send(*packets)
        return again

    def test_persistent_qos1_retransmission_is_delivered_again(self):
        """At least once: the retransmission [MQTT-4.4.0-1] is stored and routed too."""
        self.drop_with(pub("t/1", b"once", qos=1, pid=5))
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"once"])
        again = self.back_with(pub("t/1", b"once", qos=1, pid=5, dup=True))
        self.store.succeed(1)
        self.assertEqual(again.received(), [Puback(5)])
        self.assertEqual(self.delivered(), [b"once"])

    def test_persistent_qos2_committed_after_the_close_is_delivered_once(self):
        self.drop_with(pub("t/1", b"exactly", qos=2, pid=7))
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"exactly"])
        again = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual(again.received(), [Pubrec(7)])  # stored already: no second copy
        again.send(Pubrel(7))
        self.assertEqual(again.received(), [Pubcomp(7)])
        self.assertEqual((len(self.store.calls), self.delivered()), (1, []))

    def test_persistent_qos2_retransmitted_before_the_commit_waits_for_it(self):
        """The client is back and sent it again while the first copy is still being
        stored: not stored twice; its PUBREC waits for that commit (none may precede
        one), and the first copy is the one routed."""
        self.drop_with(pub("t/1", b"exactly", qos=2, pid=7))
        again = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual((len(self.store.calls), again.received()), (1, []))
        self.store.succeed(0)
        self.assertEqual(again.received(), [Pubrec(7)])
        self.assertEqual(self.delivered(), [b"exactly"])
        again.send(Pubrel(7))
        self.assertEqual(again.received(), [Pubcomp(7)])
        again.send(pub("t/1", b"next", qos=2, pid=7))  # the id is free again: stored
        self.assertEqual(len(self.store.calls), 2)

    def test_a_retransmission_fails_with_the_copy_it_waits_for(self):
        """That first copy is not stored after all: the waiting retransmission gets no
        PUBREC, its connection closes, and the next one is stored (the id is free)."""
        self.drop_with(pub("t/1", b"exactly", qos=2, pid=7))
        again = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.store.fail(0)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(again.received(), [])
        self.assertTrue(again.closed)
        again.lose()
        last = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual(len(self.store.calls), 2)
        self.store.succeed(1)
        self.assertEqual(last.received(), [Pubrec(7)])
        self.assertEqual(self.delivered(), [b"exactly"])
        self.assertEqual(self.h.broker.sessions["dev"].qos2_pending, {})

    def test_two_drops_before_the_commit(self):
        self.drop_with(pub("t/1", b"exactly", qos=2, pid=7))
        second = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        second.lose()
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"exactly"])
        last = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual(last.received(), [Pubrec(7)])
        last.send(Pubrel(7))
        self.assertEqual(last.received(), [Pubcomp(7)])
        self.assertEqual((len(self.store.calls), self.delivered()), (1, []))

    def test_persistent_qos2_stored_before_the_close_is_not_stored_again(self):
        """Committed but queued behind an earlier message when the connection dropped:
        its id is kept, so the retransmission only completes the flow (once it is
        routed)."""
        c = self.h.client("dev", clean=False)
        c.send(pub("t/1", b"first", qos=1, pid=1), pub("t/1", b"exactly", qos=2, pid=7))
        self.store.succeed(1)  # stored; its PUBREC waits behind PUBACK 1
        c.lose()
        again = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual(len(self.store.calls), 2)  # not stored again
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"first", b"exactly"])
        self.assertEqual(again.received(), [Pubrec(7)])

    def test_a_waiting_retransmission_keeps_its_place_in_receive_order(self):
        """Retained "A" (QoS 2) dropped before its commit, retransmitted, then retained
        "B": B commits first, yet subscribers get A then B [MQTT-4.6.0-6] and the
        retained value ends as B (the waiting PUBREC goes once A is routed)."""
        self.drop_with(pub("t/s", b"A", qos=2, pid=7, retain=True))
        again = self.back_with(pub("t/s", b"A", qos=2, pid=7, retain=True, dup=True),
                               pub("t/s", b"B", qos=2, pid=8, retain=True))
        self.assertEqual(len(self.store.calls), 2)  # A's first copy, B
        self.store.succeed(1)
        self.assertEqual(again.received(), [])
        self.store.succeed(0)
        self.assertEqual(again.received(), [Pubrec(7), Pubrec(8)])
        self.assertEqual(self.delivered(), [b"A", b"B"])
        self.assertEqual(self.h.broker.retained.get("t/s").payload, b"B")

    def test_a_waiting_retransmission_waits_for_the_routing_not_the_commit(self):
        """A committed but queued behind the dropped connection's earlier message (at
        the drop, or after it): the retransmission waits until A is routed."""
        for commit_a_before_the_drop in (False, True):
            self.setUp()
            c = self.h.client("dev", clean=False)
            c.send(pub("t/x", b"q1", qos=1, pid=1), pub("t/s", b"A", qos=2, pid=7, retain=True))
            if commit_a_before_the_drop:
                self.store.succeed(1)
            c.lose()
            again = self.back_with(pub("t/s", b"A", qos=2, pid=7, retain=True, dup=True),
                                   pub("t/s", b"B", qos=2, pid=8, retain=True))
            self.assertEqual(len(self.store.calls), 3)  # q1, A, B: A not stored twice
            if not commit_a_before_the_drop:
                self.store.succeed(1)
            self.store.succeed(2)
            self.assertEqual((again.received(), self.delivered()), ([], []))
            self.store.succeed(0)
            self.assertEqual(again.received(), [Pubrec(7), Pubrec(8)])
            self.assertEqual(self.delivered(), [b"q1", b"A", b"B"])
            self.assertEqual(self.h.broker.retained.get("t/s").payload, b"B")

    def test_a_failed_copy_counts_once_however_many_wait_for_it(self):
        self.drop_with(pub("t", b"A", qos=2, pid=7))
        again = self.back_with(pub("t", b"A", qos=2, pid=7, dup=True),
                               pub("t", b"A", qos=2, pid=7, dup=True))
        self.store.fail(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(again.closed)
        self.assertEqual((self.h.broker.metrics.mqtt_publish_not_stored, len(self.store.calls)), (1, 1))

    def test_receive_order_holds_across_a_reconnect(self):
        """[MQTT-4.6.0-6]: "A" on the connection that dropped, then "B" on the next one,
        same topic; B commits first (A's batch retried after a 503, say): still A then
        B, and the retained value is B, not A come back stale."""
        for qos in (0, 1):
            self.setUp()
            self.drop_with(pub("t/s", b"A", qos=qos, pid=1 if qos else None, retain=True))
            again = self.back_with(pub("t/s", b"B", qos=qos, pid=2 if qos else None, retain=True))
            self.store.succeed(1)
            self.assertEqual(again.received(), [Puback(2)] if qos else [])  # acked at once
            self.assertEqual(self.delivered(), [])  # routed after A
            self.store.succeed(0)
            self.assertEqual(self.delivered(), [b"A", b"B"])
            self.assertEqual(self.h.broker.retained.get("t/s").payload, b"B")
            self.assertEqual(len(self.h.broker.inbound), 0)

    def test_receive_order_holds_across_several_reconnects(self):
        self.drop_with(pub("t/s", b"A", qos=1, pid=1))
        self.back_with(pub("t/s", b"B", qos=1, pid=2)).lose()
        last = self.back_with(pub("t/s", b"C", qos=1, pid=3))
        self.store.succeed(2)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"A", b"B", b"C"])
        last.send(pub("t/s", b"D", qos=1, pid=4))
        self.store.succeed(3)
        self.assertEqual(self.delivered(), [b"D"])  # nothing before it now: at once
        self.assertEqual(len(self.h.broker.inbound), 0)

    def test_a_later_connections_will_waits_for_an_earlier_ones_messages(self):
        """The device said "online" and dropped before its commit; it came back, said it
        again (stored, acknowledged) and dropped for good: the will "offline" must not
        be overtaken by the first connection's late "online"."""
        self.drop_with(pub("t/status", b"online", qos=1, pid=1, retain=True))
        again = Client(self.h)
        again.connect("dev", clean=False, will=Will("t/status", b"offline", 1, retain=True))
        again.send(pub("t/status", b"online", qos=1, pid=1, retain=True, dup=True))
        self.store.succeed(1)
        again.lose()
        self.store.succeed(2)  # the will commits first
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"online", b"online", b"offline"])
        self.assertEqual(self.h.broker.retained.get("t/status").payload, b"offline")
        self.assertEqual(len(self.h.broker.inbound), 0)

    def test_a_client_that_flaps_does_not_keep_its_old_connections(self):
        """200 drops, each with a message still being stored, the newest committing
        first: once all is routed no closed connection stays referenced."""
        import gc

        from mqttd.broker.protocol import MQTTServerProtocol
        for i in range(200):
            self.drop_with(pub("t/s", b"%d" % i))
        self.back_with()
        for i in reversed(range(len(self.store.calls))):
            self.store.succeed(i)
        self.assertEqual(self.delivered(), [b"%d" % i for i in range(200)])
        self.assertEqual(len(self.h.broker.inbound), 0)
        gc.collect()
        alive = sum(isinstance(o, MQTTServerProtocol) and o.factory is self.h.factory
                    for o in gc.get_objects())
        self.assertLess(alive, 10)

    def test_a_pubrel_before_its_pubrec_does_not_free_a_waiting_id(self):
        """A client breaking the flow (PUBREL 7 while its PUBREC waits for the dropped
        connection's copy, then 7 reused) must not leave anything stuck."""
        self.drop_with(pub("t/1", b"X", qos=2, pid=7))
        again = self.back_with(pub("t/1", b"X", qos=2, pid=7, dup=True), Pubrel(7),
                               pub("t/1", b"Z", qos=2, pid=7))
        again.lose()
        for i in range(len(self.store.calls)):
            self.store.succeed(i)
        self.assertFalse(again.protocol.inbound)
        self.assertEqual(self.h.broker.sessions["dev"].qos2_pending, {})
        last = self.back_with(pub("t/1", b"Z", qos=2, pid=7, dup=True))
        self.assertEqual(last.received(), [Pubrec(7)])

    def test_persistent_qos2_that_failed_is_stored_when_sent_again(self):
        c = self.h.client("dev", clean=False)
        c.send(pub("t/1", b"exactly", qos=2, pid=7))
        self.store.fail(0)  # closes the connection, unacknowledged
        self.flushLoggedErrors(RuntimeError)
        c.lose()
        again = self.back_with(pub("t/1", b"exactly", qos=2, pid=7, dup=True))
        self.assertEqual(len(self.store.calls), 2)  # stored, not answered as a duplicate
        self.store.succeed(1)
        self.assertEqual(again.received(), [Pubrec(7)])
        self.assertEqual(self.delivered(), [b"exactly"])

    def test_the_will_follows_what_was_received_before_the_drop(self):
        """A retained "online" still being stored when the connection drops must not
        land after the will's retained "offline", even when the will commits first."""
        c = self.h.client("dev", will=Will("t/status", b"offline", 1, retain=True))
        c.send(pub("t/status", b"online", qos=1, pid=1, retain=True))
        c.lose()
        self.assertEqual(len(self.store.calls), 2)  # the will is stored at once ...
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])  # ... and routed after "online"
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"online", b"offline"])
        self.assertEqual(self.h.broker.retained.get("t/status").payload, b"offline")

    def test_the_will_goes_before_the_next_connection_of_that_client(self):
        """Reconnecting (after a drop, or taking over) while the old connection's
        messages are still being stored: its will is routed before the new
        connection's retained "online", in whatever order the three commit."""
        for takeover in (False, True):
            for order in ((0, 1, 2), (2, 1, 0), (1, 2, 0), (0, 2, 1)):
                self.setUp()
                old = self.h.client("dev", will=Will("t/status", b"offline", 1, retain=True))
                old.send(pub("t/data", b"reading", qos=1, pid=1))  # pending
                if not takeover:
                    old.lose()
                new = Client(self.h)
                new.connect("dev")
                if takeover:
                    old.lose()
                new.send(pub("t/status", b"online", qos=1, pid=1, retain=True))
                for i in order:
                    self.store.succeed(i)
                self.assertEqual(self.delivered(), [b"reading", b"offline", b"online"],
                                 (takeover, order))
                self.assertEqual(self.h.broker.retained.get("t/status").payload, b"online")
                self.assertEqual((len(self.store.calls), len(self.h.broker.inbound)), (3, 0))

    def test_the_will_is_published_after_a_failed_message_too(self):
        c = self.h.client("dev", will=Will("t/status", b"offline", 1))
        c.send(pub("t/1", b"lost", qos=1, pid=1))
        c.lose()
        self.store.fail(0)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [b"offline"])
        self.flushLoggedErrors(RuntimeError)

    def test_no_will_after_disconnect_even_with_messages_pending(self):
        c = self.h.client("dev", will=Will("t/status", b"offline", 1))
        c.send(pub("t/1", b"last", qos=0), Disconnect())
        c.lose()
        self.store.succeed(0)
        self.assertEqual((self.delivered(), len(self.store.calls)), ([b"last"], 1))

    def test_store_failure_closes_and_routes_what_was_committed(self):
        c = self.h.client("dev")
        c.send(pub("t/1", b"a", qos=1, pid=1), pub("t/1", b"b", qos=1, pid=2))
        self.store.succeed(1)
        self.store.fail(0)
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(self.delivered(), [b"b"])
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


class Qos2PubcompOrderTests(unittest.TestCase):
    def test_pubcomp_waits_behind_a_queued_duplicate_pubrec(self):
        """A QoS 2 retransmit's PUBREC queued behind an uncommitted QoS 1 must not arrive
        after the PUBCOMP: by then the client may have reused the id for a new message,
        which that stray PUBREC would acknowledge before its commit."""
        store = ManualStore()
        c = Harness(store=store).client("c")
        c.send(pub("t", b"a", qos=2, pid=5), pub("t", b"q1", qos=1, pid=6),
               pub("t", b"a", qos=2, pid=5, dup=True))
        store.succeed(0)
        self.assertEqual(c.received(), [Pubrec(5)])
        c.send(Pubrel(5))
        self.assertEqual(c.received(), [])  # behind PUBACK 6 and the duplicate's PUBREC
        store.succeed(1)
        self.assertEqual(c.received(), [Puback(6), Pubrec(5), Pubcomp(5)])
        self.assertEqual(len(store.calls), 2)  # the retransmit was not stored again

    def test_pubcomp_at_once_when_nothing_waits(self):
        store = ManualStore()
        c = Harness(store=store).client("c")
        c.send(pub("t", qos=2, pid=5))
        store.succeed(0)
        c.send(Pubrel(5))
        self.assertEqual(c.received(), [Pubrec(5), Pubcomp(5)])


class WebhookReorderTests(unittest.TestCase):
    def test_qos2_retransmission_waits_for_a_retried_original(self):
        """End to end with the real WebhookSink (pool_size 1): the dropped connection's
        batch gets a 503 and waits in backoff, its slot free; the retransmission is not
        stored a second time, and its PUBREC comes once the original's retry commits."""
        from treq.testing import StubTreq

        from mqttd.broker.broker import Broker
        from mqttd.broker.protocol import MQTTServerFactory
        from mqttd.config import WebhookConfig
        from mqttd.ingest.client import WebhookSink
        from tests.support.webhook import URL, Webhook

        h = Harness()
        webhook = Webhook([503])  # the first request: 503 (Retry-After 1), then 200s
        http = StubTreq(webhook)
        store = WebhookSink(h.clock, WebhookConfig(), http, URL, random=lambda: 1.0)
        h.broker = Broker(h.clock, h.config, store, h.authenticator)
        h.factory = MQTTServerFactory(h.broker, h.clock)

        def tick(seconds=0.0):
            h.clock.advance(seconds)
            http.flush()

        sub = h.client("sub")
        sub.send(Subscribe(1, (("t/#", 2),)))
        sub.received()
        old = h.client("dev", clean=False)
        old.send(pub("t/1", b"A", qos=2, pid=7))
        tick()  # 503: backoff
        old.lose()
        new = Client(h)
        new.connect("dev", clean=False)
        new.send(pub("t/1", b"A", qos=2, pid=7, dup=True))
        tick()
        self.assertEqual((len(webhook.bodies), new.received()), (1, []))  # waits for it
        tick(1.0)  # the original's retry: committed
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"A"])
        self.assertEqual(new.received(), [Pubrec(7)])
        new.send(Pubrel(7))
        self.assertEqual(new.received(), [Pubcomp(7)])
        new.send(pub("t/1", b"B", qos=2, pid=7))  # id 7 reused: a new message
        tick(0.01)
        self.assertEqual(len(webhook.bodies), 3)  # A twice (503, then 200), B once
        self.assertEqual(new.received(), [Pubrec(7)])
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"B"])
        # One row per message: the retransmission of A was not stored a second time.
        self.assertEqual(sorted(webhook.stored.values()), [b"A", b"B"])


class WillStoreTests(unittest.TestCase):
    def test_a_will_the_store_fails_is_logged_and_counted(self):
        """Nobody resends a lost will: its failure must be seen."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = ManualStore()
        h = Harness(store=store)
        h.client("dev", will=Will("t/status", b"offline", 1, retain=True)).lose()
        store.fail(0)
        self.assertEqual((h.broker.metrics.mqtt_publish_not_stored, h.broker.metrics.mqtt_wills_published), (1, 1))
        self.assertIn("will of {client_id} not stored, not published: {reason}",
                      [e.get("log_format") for e in events])
        self.assertEqual(h.broker.retained.get("t/status"), None)

    def test_a_connection_gone_before_its_answer_does_not_make_the_client_linger(self):
        """mosquitto_pub -q 0 sends PUBLISH then DISCONNECT; a device that published
        just before it died: neither publishes again, so the next batch must not wait
        for them, nor linger be turned off."""
        from tests.support.webhook import Harness as WebhookHarness

        for will in (None, Will("w", b"bye", 0, retain=False)):
            webhook = WebhookHarness(self, linger=0.001)
            h = Harness(store=webhook.store)
            live = h.client("live")
            dev = h.client("dev", will=will)
            live.send(pub("t/a", b"1", qos=1, pid=1))
            dev.send(pub("t/b", b"x", qos=1, pid=1))
            dev.lose()
            webhook.tick()
            self.assertEqual(len(webhook.webhook.bodies), 1)
            live.received()
            live.send(pub("t/a", b"2", qos=1, pid=2))
            webhook.tick()
            self.assertEqual(len(webhook.webhook.bodies), 2, will)  # not held for "dev"
            self.assertTrue(webhook.store._prompt)

    def test_one_broken_will_does_not_keep_the_others_of_its_batch(self):
        """One answer settles the wills of many clients in one call."""
        from tests.support.webhook import Harness as WebhookHarness

        webhook = WebhookHarness(self)
        h = Harness(store=webhook.store)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("w/#", 0),)))
        sub.received()
        first = h.client("a", will=Will("w/a", b"a gone", 0, retain=False))
        second = h.client("b", will=Will("w/b", b"b gone", 0, retain=False))

        route = h.broker.route

        def broken(message):
            if message.topic == "w/a":
                raise RuntimeError("a bug")
            route(message)

        h.broker.route = broken
        first.lose()
        second.lose()
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 1)  # both wills, one batch
        self.assertEqual([p.payload for p in publishes(sub.received())], [b"b gone"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_will_does_not_make_the_webhook_client_linger(self):
        """The webhook client's linger waits for the connections an answer
        acknowledged; a will stands for none and must not be waited for."""
        from tests.support.webhook import Harness as WebhookHarness

        webhook = WebhookHarness(self, linger=0.001)
        h = Harness(store=webhook.store)
        live = h.client("live")
        dev = h.client("dev", will=Will("w", b"bye", 0, retain=False))
        live.send(pub("t/a", b"1", qos=1, pid=1))
        dev.lose()  # the will joins the same batch
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 1)
        live.received()
        live.send(pub("t/a", b"2", qos=1, pid=2))
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 2)  # not held for the will
        self.assertFalse(webhook.store._holding)


class ClosingWhilePausedTests(unittest.TestCase):
    """A connection closed while its reads are paused must still finish closing: over
    TLS, loseConnection waits for the client's close_notify, which a paused transport
    never reads, so the socket and its max_connections slot were never released."""

    def paused_client(self, h):
        c = h.client("dev")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.paused)
        return c

    def test_takeover_resumes_reading_before_closing(self):
        h = Harness(store=ManualStore(), max_inflight=2)
        old = self.paused_client(h)
        h.client("dev")  # the same client id again: the old connection is closed
        self.assertTrue(old.closed)
        self.assertFalse(old.paused)

    def test_disconnect_in_the_read_that_fills_the_window(self):
        """publish() x N then disconnect() without waiting: the last PUBLISH pauses
        reading, the DISCONNECT in the same read closes."""
        h = Harness(store=ManualStore(), max_inflight=2)
        c = h.client("dev")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2), Disconnect())
        self.assertTrue(c.closed)
        self.assertFalse(c.paused)

    def test_a_close_that_never_completes_is_aborted(self):
        store = ManualStore()
        h = Harness(store=store, max_inflight=2)
        c = self.paused_client(h)
        store.fail(0)  # the store gives up: closed without acks
        self.flushLoggedErrors(RuntimeError)
        self.assertTrue(c.closed)
        self.assertFalse(c.transport.disconnected)
        h.clock.advance(9.9)
        self.assertFalse(c.transport.disconnected)
        h.clock.advance(0.1)  # the client never let it finish (no close_notify, no EOF)
        self.assertTrue(c.transport.disconnected)  # aborted
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 1)  # released once connectionLost comes
        c.lose()
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 0)

    def test_a_close_that_completes_cancels_the_abort(self):
        h = Harness(store=ManualStore(), max_inflight=2)
        c = self.paused_client(h)
        c.disconnect()
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertFalse(c.transport.disconnected)


class SubmitSeamTests(unittest.TestCase):
    """The broker over ISubmittingMessageSink: the same promise without Deferreds."""

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

    def test_failure_of_a_whole_group_counts_each(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        store.settle([0, 1], Failure(StoreRejected("refused")))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.broker.metrics.mqtt_publish_not_stored, 2)

    def test_late_group_after_close_sends_nothing(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        c.lose()
        store.settle([0, 1])
        self.assertEqual(c.received(), [])

    def test_failed_qos2_is_stored_again_on_retransmit(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("dev", clean=False)
        c.send(pub("t", b"v", qos=2, pid=7))
        store.settle([0], Failure(StoreRejected("ack timeout")))
        c.lose()
        again = Client(h)
        again.connect("dev", clean=False)
        again.send(pub("t", b"v", qos=2, pid=7, dup=True))
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
        store = SubmittingStore()
        h = Harness(store=store, max_inflight=2)
        c = h.client("c")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.paused)
        store.settle([1])
        self.assertTrue(c.paused)
        store.settle([0])
        self.assertFalse(c.paused)

    def test_routing_waits_for_the_group_and_keeps_order(self):
        store = SubmittingStore()
        h = Harness(store=store)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"a", qos=1, pid=1), pub("t", b"b", qos=1, pid=2))
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
