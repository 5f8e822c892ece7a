"""ConnectOutcomes: a socket the master closed before its CONNECT was judged, or whose
hand-off failed, is counted by reason and logged within the per-address budget."""
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.edge.channel_end import ChannelLost
from mqttd.edge.handoff_master import HandoffQueueFull, HandoffRefused
from mqttd.metrics import Metrics
from mqttd.tree.connect_outcomes import ConnectOutcomes
from tests.support.logs import capture_logs


class ConnectOutcomesTests(unittest.TestCase):
    def setUp(self):
        self.metrics = Metrics()
        self.outcomes = ConnectOutcomes(self.metrics, LogRateLimit(Clock(), 2, 60.0))
        self.events = capture_logs(self)

    def lines(self):
        return [e for e in self.events if "before its CONNECT" in e.get("log_format", "")
                or "hand-off of" in e.get("log_format", "")]

    def test_each_close_is_counted_by_its_reason(self):
        for reason in ("no CONNECT in time", "protocol error: bad length", "lost",
                       "closed before CONNECT", "partial input budget", "packet timeout",
                       "Connection reset by peer"):
            self.outcomes.closed("10.0.0.1", reason)
        value = self.metrics.value
        self.assertEqual([value("edge_connect_closed", reason=r) for r in (
            "idle_timeout", "protocol_error", "closed", "partial_input", "packet_timeout",
            "other")], [1, 1, 2, 1, 1, 1])

    def test_the_masters_own_stop_is_not_counted(self):
        self.outcomes.closed("10.0.0.1", "master stopping")
        self.assertEqual(self.metrics.value("edge_connect_closed", reason="other"), 0)
        self.assertEqual(self.lines(), [])

    def test_lines_stay_within_the_budget_of_the_address(self):
        for _ in range(5):
            self.outcomes.closed("10.0.0.1", "no CONNECT in time")
        self.outcomes.closed("10.0.0.2", "no CONNECT in time")
        hosts = [e["host"] for e in self.lines()]
        self.assertEqual(hosts, ["10.0.0.1", "10.0.0.1", "10.0.0.2"])
        self.assertEqual(self.metrics.value("edge_connect_closed", reason="idle_timeout"), 6)

    def test_failed_hand_offs_are_counted_and_logged_by_reason(self):
        for error in (HandoffRefused("gone"), HandoffQueueFull("full"), ChannelLost("eof")):
            self.outcomes.handoff_failed("10.0.0.3", "dev-1", 2, Failure(error))
        self.assertEqual([self.metrics.value("edge_handoff_failed", reason=r)
                          for r in ("refused", "queue_full", "channel_lost")], [1, 1, 1])
        self.assertEqual(len(self.lines()), 2)  # the third is past the budget of 2
        self.assertEqual(self.lines()[0]["client_id"], "dev-1")
