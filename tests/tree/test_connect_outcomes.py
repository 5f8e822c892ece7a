"""ConnectOutcomes: a socket the master closed before its CONNECT was judged, refused
itself after the gate let it in, or whose hand-off failed, is counted by reason, logged
within the per-address budget and traced (every path: the trace's lines themselves are
in tests/manage/test_trace_tree.py)."""
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.edge.channel_end import ChannelLost
from mqttd.edge.handoff_master import HandoffQueueFull, HandoffRefused
from mqttd.metrics import Metrics
from mqttd.tree.connect_outcomes import INTERNAL_ERROR, NO_WORKER, STOPPING, ConnectOutcomes
from tests.support.logs import capture_logs


def pending(host):
    return SimpleNamespace(host=host)


class Trace:
    """What the master's trace was told: (hook, host, reason, the rest)."""

    def __init__(self):
        self.told = []

    def not_connected(self, pending, reason):
        self.told.append(("not_connected", pending.host, reason))

    def refused(self, pending, connect, client_id, account, reason, code=None,
                stage="connect", **fields):
        self.told.append(("refused", pending.host, reason,
                          dict(client_id=client_id, account=account, code=code, stage=stage,
                               **fields)))


class ConnectOutcomesTests(unittest.TestCase):
    def setUp(self):
        self.metrics = Metrics()
        self.trace = Trace()
        self.outcomes = ConnectOutcomes(self.metrics, LogRateLimit(Clock(), 2, 60.0),
                                        self.trace)
        self.events = capture_logs(self)

    def lines(self):
        return [e for e in self.events if "before its CONNECT" in e.get("log_format", "")
                or "hand-off of" in e.get("log_format", "")]

    def test_each_close_is_counted_by_its_reason(self):
        reasons = ("no CONNECT in time", "protocol error: bad length", "lost",
                   "closed before CONNECT", "partial input budget", "packet timeout",
                   "Connection reset by peer")
        for reason in reasons:
            self.outcomes.closed(pending("10.0.0.1"), reason)
        value = self.metrics.value
        self.assertEqual([value("edge_connect_closed", reason=r) for r in (
            "idle_timeout", "protocol_error", "closed", "partial_input", "packet_timeout",
            "other")], [1, 1, 2, 1, 1, 1])
        self.assertEqual([(hook, reason) for hook, _, reason in self.trace.told],
                         [("not_connected", reason) for reason in reasons])

    def test_the_masters_own_stop_is_not_counted(self):
        self.outcomes.closed(pending("10.0.0.1"), STOPPING)
        self.assertEqual(self.metrics.value("edge_connect_closed", reason="other"), 0)
        self.assertEqual(self.lines(), [])
        self.assertEqual(self.trace.told, [("not_connected", "10.0.0.1", STOPPING)])

    def test_lines_stay_within_the_budget_of_the_address(self):
        for _ in range(5):
            self.outcomes.closed(pending("10.0.0.1"), "no CONNECT in time")
        self.outcomes.closed(pending("10.0.0.2"), "no CONNECT in time")
        hosts = [e["host"] for e in self.lines()]
        self.assertEqual(hosts, ["10.0.0.1", "10.0.0.1", "10.0.0.2"])
        self.assertEqual(self.metrics.value("edge_connect_closed", reason="idle_timeout"), 6)

    def test_failed_hand_offs_are_counted_and_logged_by_reason(self):
        for error in (HandoffRefused("gone"), HandoffQueueFull("full"), ChannelLost("eof")):
            self.outcomes.handoff_failed(pending("10.0.0.3"), None, "dev-1", "acme", 2,
                                         Failure(error))
        self.assertEqual([self.metrics.value("edge_handoff_failed", reason=r)
                          for r in ("refused", "queue_full", "channel_lost")], [1, 1, 1])
        self.assertEqual(len(self.lines()), 2)  # the third is past the budget of 2
        self.assertEqual(self.lines()[0]["client_id"], "dev-1")
        self.assertEqual([told[3] for told in self.trace.told], [
            {"client_id": "dev-1", "account": "acme", "code": None, "stage": "handoff",
             "detail": why, "worker": 2} for why in ("refused", "queue_full", "channel_lost")])
        self.assertEqual({told[2] for told in self.trace.told}, {"hand-off failed"})

    def test_connack_3_after_the_gate_is_traced_with_its_reason(self):
        for reason in (NO_WORKER, INTERNAL_ERROR, STOPPING):
            self.outcomes.refused(pending("10.0.0.5"), None, "dev-2", "acme", reason, 3)
        self.assertEqual([(told[0], told[2], told[3]["code"], told[3]["client_id"])
                          for told in self.trace.told],
                         [("refused", reason, 3, "dev-2")
                          for reason in (NO_WORKER, INTERNAL_ERROR, STOPPING)])
        # Only the wait for a worker is this path's own to count and log.
        self.assertEqual(self.metrics.value("mqtt_connect_refused", reason="no worker"), 1)
        lines = [e for e in self.events if "no worker took it" in e.get("log_format", "")]
        self.assertEqual([(e["client_id"], e["host"], e["code"]) for e in lines],
                         [("dev-2", "10.0.0.5", 3)])
