"""WaitingRoom: a judged connection no worker can take waits for one, at most
broker.idle_timeout, then goes to whichever is up or gets CONNACK 3, with the reason
the master counts, logs and traces (tests/tree/test_connect_outcomes.py)."""
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.edge.balancer import Balancer
from mqttd.tree.connect_outcomes import NO_WORKER, STOPPING
from mqttd.tree.waiting_room import WaitingRoom


def connect(client_id):
    return SimpleNamespace(client_id=client_id, clean_session=True)


class WaitingRoomTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.balancer = Balancer((1, 2))
        self.sent, self.refused = [], []
        self.room = WaitingRoom(self.clock, self.balancer, 2, 5.0,
                                lambda p, c, let, slot: self.sent.append((p, slot)),
                                lambda p, c, let, why: self.refused.append(
                                    (p, c.client_id, let.ticket, why)))
        self.room.start()
        self.let = SimpleNamespace(ticket="t")

    def test_at_the_start_an_id_waits_for_its_own_worker(self):
        home = self.balancer.home("dev-1")
        other = 3 - home
        self.balancer.up(other)
        self.room.enter("p", connect("dev-1"), self.let)
        self.room.dispatch()
        self.assertEqual(self.sent, [])  # its home is not up yet
        self.balancer.up(home)
        self.room.dispatch()
        self.assertEqual(self.sent, [("p", home)])

    def test_past_the_wait_it_goes_to_whichever_is_up(self):
        home = self.balancer.home("dev-1")
        self.balancer.up(3 - home)
        self.room.enter("p", connect("dev-1"), self.let)
        self.clock.advance(4.9)
        self.assertEqual(self.sent, [])
        self.clock.advance(0.1)
        self.assertEqual(self.sent, [("p", 3 - home)])

    def test_no_worker_up_past_the_wait_is_refused_with_its_ticket(self):
        self.room.enter("p", connect("dev-1"), self.let)
        self.clock.advance(5.0)
        self.assertEqual((self.sent, self.refused), ([], [("p", "dev-1", "t", NO_WORKER)]))

    def test_the_stop_refuses_whoever_waits_and_cancels_the_timers(self):
        self.room.enter("p", connect("dev-1"), self.let)
        self.room.stop()
        self.assertEqual(self.refused, [("p", "dev-1", "t", STOPPING)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
