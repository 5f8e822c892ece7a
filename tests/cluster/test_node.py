"""This node's heartbeat in Redis (mqttd.cluster.node): set before anything else on a
new connection, renewed every third of its TTL, and a lapse writes the state again."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.cluster.node import ClusterNode
from tests.support.redis_link import FakeLink


class NodeTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.link = FakeLink(up=False)
        self.node = ClusterNode(self.clock, self.link, "p:", "n1", 9.0, boot_id="b")
        self.resyncs = []
        self.node.on_resync(lambda: self.resyncs.append(len(self.link.calls)))
        self.node.start()

    def test_a_new_connection_sets_the_heartbeat_then_resyncs(self):
        self.link.go_up()
        (heartbeat,) = self.link.calls
        self.assertEqual(heartbeat.args, ["p:node:n1/b", "n1", "PX", 9000, "GET"])
        self.assertEqual(self.resyncs, [1])  # after the heartbeat was sent

    def test_renewed_every_third_of_the_ttl_while_up(self):
        self.clock.advance(3.0)
        self.assertEqual(self.link.calls, [])  # down: nothing sent
        self.link.go_up()
        self.link.answer("SET", None)
        self.clock.advance(2.9)
        self.assertEqual(len(self.link.named("SET")), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.link.named("SET")), 2)

    def test_a_renewal_that_finds_it_expired_resyncs(self):
        self.link.go_up()
        self.link.answer("SET", None)
        self.clock.advance(3.0)
        self.link.answer("SET", "n1")  # alive all along
        self.assertEqual(len(self.resyncs), 1)
        self.clock.advance(3.0)
        self.link.answer("SET", None)  # had lapsed: the others dropped our seats
        self.assertEqual(len(self.resyncs), 2)

    def test_stop_removes_the_heartbeat(self):
        self.link.go_up()
        d = self.node.stop()
        (delete,) = self.link.named("DEL")
        self.assertEqual(delete.args, ["p:node:n1/b"])
        delete.deferred.callback(1)
        self.successResultOf(d)
        self.clock.advance(30)
        self.assertEqual(len(self.link.named("SET")), 1)

    def test_a_boot_id_is_made_per_run(self):
        other = ClusterNode(self.clock, FakeLink(), "p:", "n1", 9.0)
        again = ClusterNode(self.clock, FakeLink(), "p:", "n1", 9.0)
        self.assertTrue(other.field.startswith("n1/"))
        self.assertNotEqual(other.field, again.field)
