"""Account quotas across nodes (mqttd.cluster.seats): what this node asks Redis, and
what it does with each answer, with the link up, down, and coming back."""
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.cluster.node import ClusterNode
from mqttd.cluster.seats import SharedTickets
from mqttd.metrics import Metrics
from tests.support.redis_link import FakeLink


class SeatsCase(unittest.TestCase):
    def setUp(self):
        self.link = FakeLink()
        self.metrics = Metrics()
        self.node = ClusterNode(Clock(), self.link, "p:", "n1", 10.0, boot_id="b")
        self.released = []
        self.tickets = SharedTickets(self.node, self.link, self.metrics, self.released.append)

    def issue(self, client_id, account="acme", max_connections=2):
        return self.tickets.issue(client_id, "tok", "10.0.0.1", account, "tok", "hash",
                                  "tok", max_connections)

    def seat(self, client_id, answer=1, **kwargs):
        d = self.issue(client_id, **kwargs)
        self.assertIsInstance(d, Deferred)
        self.link.answer("seat", answer)
        return self.successResultOf(d)


class AskTests(SeatsCase):
    def test_a_new_client_id_asks_redis_with_the_node_field_and_the_quota(self):
        d = self.issue("c1")
        (call,) = self.link.named("seat")
        self.assertEqual(call.keys, ["p:seats:acme"])
        self.assertEqual(call.args, ["n1/b", 2, "p:node:"])
        self.assertNoResult(d)
        call.deferred.callback(1)
        ticket = self.successResultOf(d)
        self.assertEqual((ticket.client_id, ticket.account), ("c1", "acme"))
        self.assertEqual(self.tickets.seats_taken("acme"), 1)

    def test_refused_by_redis_is_none_and_takes_no_seat(self):
        self.assertIsNone(self.seat("c1", answer=0))
        self.assertEqual(self.tickets.seats_taken("acme"), 0)
        self.assertEqual(len(self.tickets), 0)

    def test_a_takeover_here_asks_nothing(self):
        first = self.seat("c1")
        again = self.issue("c1")
        self.assertNotIsInstance(again, Deferred)
        self.assertEqual(again.client_id, "c1")
        self.assertEqual(len(self.link.named("seat")), 1)
        first.release()  # the older one ends: the seat stays with the newer
        self.assertEqual(self.link.named("unseat"), [])
        again.release()
        (unseat,) = self.link.named("unseat")
        self.assertEqual((unseat.keys, unseat.args), (["p:seats:acme"], ["n1/b"]))

    def test_the_same_id_while_its_seat_is_asked_waits_and_then_is_a_takeover(self):
        first, second = self.issue("c1"), self.issue("c1")
        self.assertEqual(len(self.link.named("seat")), 1)
        self.assertNoResult(second)
        self.link.answer("seat", 1)
        self.assertIsNotNone(self.successResultOf(first))
        self.assertEqual(self.successResultOf(second).client_id, "c1")
        self.assertEqual(len(self.link.named("seat")), 1)  # one seat asked, never two
        self.assertEqual(self.tickets.seats_taken("acme"), 1)

    def test_the_same_id_after_a_refusal_asks_again(self):
        first, second = self.issue("c1"), self.issue("c1")
        self.link.answer("seat", 0)
        self.assertIsNone(self.successResultOf(first))
        self.assertNoResult(second)
        self.link.answer("seat", 1)
        self.assertEqual(self.successResultOf(second).client_id, "c1")

    def test_full_here_already_is_refused_without_asking(self):
        self.seat("c1")
        self.seat("c2")
        self.assertIsNone(self.issue("c3"))
        self.assertEqual(len(self.link.named("seat")), 2)

    def test_an_account_without_quota_is_counted_without_asking(self):
        ticket = self.issue("c1", max_connections=None)
        self.assertEqual(ticket.client_id, "c1")
        (count,) = self.link.named("HINCRBY")
        self.assertEqual(count.args, ["p:seats:acme", "n1/b", 1])
        ticket.release()
        self.assertEqual(len(self.link.named("unseat")), 1)

    def test_no_account_is_never_counted(self):
        ticket = self.issue("c1", account=None)
        ticket.release()
        self.assertEqual(self.link.calls, [])


class FallbackTests(SeatsCase):
    def test_link_down_the_quota_is_this_nodes_alone(self):
        self.link.up = False
        self.assertIsNotNone(self.issue("c1"))
        self.assertIsNotNone(self.issue("c2"))
        self.assertIsNone(self.issue("c3"))
        self.assertEqual(self.metrics.value("cluster_fallbacks", job="quota"), 3)

    def test_a_seat_not_answered_is_judged_here(self):
        d = self.issue("c1")
        self.link.go_down()
        self.assertEqual(self.successResultOf(d).client_id, "c1")
        self.assertEqual(self.metrics.value("cluster_fallbacks", job="quota"), 1)

    def test_release_while_down_sends_nothing(self):
        ticket = self.seat("c1")
        self.link.up = False
        ticket.release()
        self.assertEqual(self.link.named("unseat"), [])


class ReseatTests(SeatsCase):
    def test_back_up_the_node_writes_its_seats_whole_after_its_heartbeat(self):
        self.seat("c1")
        self.seat("c2", account="other")
        gone = self.seat("c3", account="gone")
        gone.release()
        self.link.calls.clear()
        self.link.go_up()
        heartbeat, reseat = self.link.calls
        self.assertEqual(heartbeat.name, "SET")
        self.assertEqual(heartbeat.args[0], "p:node:n1/b")
        self.assertEqual(reseat.name, "reseat")
        self.assertEqual(reseat.keys, ["p:seats:acme", "p:seats:gone", "p:seats:other"])
        self.assertEqual(reseat.args, ["n1/b", 1, 0, 1])

    def test_seats_being_asked_are_counted_and_a_late_refusal_gives_back(self):
        d = self.issue("c1")
        self.link.go_up()
        (reseat,) = self.link.named("reseat")
        self.assertEqual(reseat.args, ["n1/b", 1])
        self.link.answer("seat", 0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.link.named("unseat")), 1)

    def test_a_late_seat_after_a_rewrite_is_kept(self):
        d = self.issue("c1")
        self.link.go_up()
        self.link.answer("seat", 1)
        self.assertIsNotNone(self.successResultOf(d))
        self.assertEqual(self.link.named("unseat"), [])
