"""Flapping across nodes (mqttd.cluster.flapping): each disconnect counted in Redis,
the ban made here when Redis says the key flapped; this node's own count when not."""
import attrs
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.cluster.flapping import SharedFlapping
from mqttd.cluster.node import ClusterNode
from mqttd.config import FlappingDetectConfig
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs
from tests.support.redis_link import FakeLink


class SharedFlappingTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.link = FakeLink()
        self.metrics = Metrics()
        self.bans = []
        self.detector = self.build()

    def build(self, **changes):
        config = attrs.evolve(FlappingDetectConfig(max_count=3, window_time=10.0,
                                                   ban_time=5.0), **changes)
        node = ClusterNode(self.clock, self.link, "p:", "n1", 10.0, boot_id="b")
        return SharedFlapping(node, self.link, self.clock, config, self.bans.append,
                              self.metrics, LogRateLimit(self.clock, 100, 60.0))

    def test_each_disconnect_is_counted_in_redis_under_its_key(self):
        self.detector.disconnected("dev-1", "hash", "10.0.0.1")
        (call,) = self.link.named("flap")
        self.assertEqual(call.keys, ["p:flap:clientid:dev-1"])
        self.assertEqual(call.args, [repr(1_700_000_000.0), "10.0", 3, "n1/b/1"])
        self.detector.disconnected("dev-1")
        self.assertEqual(self.link.named("flap")[1].args[3], "n1/b/2")  # unique members

    def test_username_and_ip_keys_when_asked(self):
        detector = self.build(by_username=True, by_ip=True)
        detector.disconnected("dev-1", "hash", "10.0.0.1")
        self.assertEqual([c.keys[0] for c in self.link.named("flap")],
                         ["p:flap:clientid:dev-1", "p:flap:username:hash",
                          "p:flap:ip:10.0.0.1"])

    def test_redis_says_it_flapped_this_node_bans(self):
        self.detector.disconnected("dev-1", None, "10.0.0.1")
        self.link.answer("flap", 0)
        self.assertEqual(self.bans, [])
        self.clock.advance(2)
        self.detector.disconnected("dev-1", None, "10.0.0.1")
        self.link.answer("flap", 1)
        (ban,) = self.bans
        self.assertEqual((ban.kind, ban.value, ban.who), ("clientid", "dev-1", "flapping"))
        self.assertEqual((ban.at, ban.until), (1_700_000_002.0, 1_700_000_007.0))
        self.assertEqual(self.metrics.value("edge_flapping_bans", kind="clientid"), 1)

    def test_the_ban_line_names_the_credentials_given_redis_up_or_down(self):
        events = capture_logs(self)
        self.detector.disconnected("dev-1", "hash", "10.0.0.1", "token abc123")
        self.link.answer("flap", 1)
        self.link.up = False
        for _ in range(3):
            self.detector.disconnected("dev-2", "hash", "10.0.0.2", "token def456")
        lines = [formatEvent(e) for e in events if "flapping: banned" in e["log_format"]]
        self.assertEqual(len(lines), 2)
        self.assertIn("(client dev-1 from 10.0.0.1, token abc123)", lines[0])
        self.assertIn("(client dev-2 from 10.0.0.2, token def456)", lines[1])

    def test_dry_run_bans_nothing(self):
        detector = self.build(dry_run=True)
        detector.disconnected("dev-1")
        self.link.answer("flap", 1)
        self.assertEqual(self.bans, [])
        self.assertEqual(self.metrics.value("edge_flapping_would_ban", kind="clientid"), 1)

    def test_disabled_asks_nothing(self):
        self.build(enable=False).disconnected("dev-1")
        self.assertEqual(self.link.calls, [])

    def test_redis_down_this_node_counts_and_bans_alone(self):
        self.link.up = False
        for _ in range(3):
            self.detector.disconnected("dev-1")
        self.assertEqual([b.value for b in self.bans], ["dev-1"])
        self.assertEqual(self.metrics.value("cluster_fallbacks", job="flapping"), 3)

    def test_a_count_not_answered_is_counted_here(self):
        for _ in range(3):
            self.detector.disconnected("dev-1")
        self.link.go_down()
        self.assertEqual([b.value for b in self.bans], ["dev-1"])
