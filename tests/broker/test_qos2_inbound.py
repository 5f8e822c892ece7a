"""Inbound QoS 2 exactly once: a duplicate is answered, not stored twice; PUBCOMP keeps
its place; a persistent client's retransmission across a drop waits for, or fails
with, the copy still being stored.
"""
from twisted.trial import unittest

from mqttd.codec import Puback, Pubcomp, Pubrec, Pubrel
from tests.support.after_close import AfterCloseCase
from tests.support.broker import Harness, ManualStore, pub, publishes


class Qos2InboundTests(unittest.TestCase):
    def test_duplicate_answered_not_stored_twice(self):
        store = ManualStore()
        h = Harness(store=store)
        sub = h.subscriber("t")
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
        again = h.client("dev", clean=False)
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


class Qos2AcrossDropsTests(AfterCloseCase):
    """A persistent client drops with a QoS 1/2 message still being stored and
    sends it again: stored once (QoS 2), acknowledged only after its commit."""

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
