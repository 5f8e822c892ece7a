"""/healthz of the tree: every worker ready, the ingest child up, every child heard from."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.edge.balancer import Balancer
from mqttd.manage.tree_metrics import TreeMetrics, snapshot
from mqttd.metrics import Metrics
from mqttd.tree.health import tree_health


class _Ingest:
    up = False


class TreeHealthTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.balancer = Balancer(range(1, 3))
        self.tree = TreeMetrics(self.clock, Metrics(), "mqttd-master")
        self.ingest = _Ingest()

    def health(self):
        return tree_health(2, self.balancer, self.tree, self.ingest)

    def test_healthy_only_once_every_worker_is_ready_and_ingest_up(self):
        for name in ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest"):
            self.tree.started(name)
        self.assertEqual(self.health(), (False, "mqttd-worker-1 not ready; mqttd-worker-2 not "
                                                "ready; mqttd-ingest not ready"))
        self.balancer.up(1)
        self.balancer.up(2)
        self.assertEqual(self.health(), (False, "mqttd-ingest not ready"))
        self.ingest.up = True
        self.assertEqual(self.health(), (True, "ok"))
        self.balancer.down(2)
        self.assertEqual(self.health(), (False, "mqttd-worker-2 not ready"))

    def test_a_worker_silent_past_stale_after_is_unhealthy(self):
        self.balancer.up(1)
        self.balancer.up(2)
        self.ingest.up = True
        for name in ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest"):
            self.tree.started(name)
        self.clock.advance(4.0)
        for name in ("mqttd-worker-1", "mqttd-ingest"):
            self.tree.report(name, snapshot(Metrics(), "r"))
        self.clock.advance(1.0)
        self.assertEqual(self.health(), (True, "ok"))
        self.clock.advance(0.5)
        self.assertEqual(self.health(), (False, "mqttd-worker-2 silent for 5.5 s"))

    def test_without_an_ingest_child_only_the_workers_count(self):
        self.balancer.up(1)
        self.balancer.up(2)
        self.assertEqual(tree_health(2, self.balancer, self.tree, None), (True, "ok"))
