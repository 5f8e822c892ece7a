"""A clean stop of the webhook client: ``drain`` takes nothing new, sends what it holds at
once, and fires once every message has its answer (or ``stop`` fails the rest at the
drain's timeout). The real WebhookSink on a Clock, its webhook held until answered."""
from twisted.trial import unittest

from tests.support.messages import message as msg
from tests.support.pressure import StoreHarness


class DrainTests(unittest.TestCase):
    def setUp(self):
        # Nothing leaves before its batch fills or a second passes: drain must not wait.
        self.h = StoreHarness(pool_size=1, batch_size=100, batch_delay=1.0)

    def test_waiting_messages_are_sent_at_once_and_acknowledged(self):
        h = self.h
        h.submit(*[msg(i) for i in range(3)])
        d = h.store.drain(timeout=5.0)
        h.http.flush()
        self.assertEqual(len(h.webhook.held), 1, "the waiting batch did not leave at once")
        self.assertNoResult(d)
        h.answer()
        self.successResultOf(d)
        self.assertEqual([o for _, o in h.outcomes], ["ok"] * 3)

    def test_nothing_new_is_taken_while_draining(self):
        h = self.h
        h.submit(msg(1))
        d = h.store.drain(timeout=5.0)
        h.submit(msg(2))
        self.assertEqual(h.outcomes, [(msg(2).key, "stopping")])
        h.http.flush()
        h.answer()
        self.successResultOf(d)
        self.assertIn((msg(1).key, "ok"), h.outcomes)

    def test_every_batch_in_flight_and_waiting_is_answered_before_it_fires(self):
        h = self.h
        h.submit(*[msg(i) for i in range(100)])  # a full batch: leaves now
        h.send()
        h.submit(*[msg(i) for i in range(100, 150)])  # waits for the one slot
        d = h.store.drain(timeout=5.0)
        h.answer()  # the first batch; the second leaves
        self.assertNoResult(d)
        h.answer()
        self.successResultOf(d)
        self.assertEqual(sorted(o for _, o in h.outcomes), ["ok"] * 150)

    def test_at_its_timeout_what_is_left_is_failed(self):
        h = self.h
        h.submit(msg(1))
        d = h.store.drain(timeout=2.0)
        h.http.flush()
        h.clock.advance(1.9)
        self.assertNoResult(d)
        h.clock.advance(0.1)
        self.successResultOf(d)
        h.submit(msg(2))  # stopped now
        self.assertIn((msg(2).key, "stopping"), h.outcomes)

    def test_drain_of_an_idle_sink_fires_at_once(self):
        self.successResultOf(self.h.store.drain(timeout=5.0))
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
