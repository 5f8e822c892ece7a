"""The webhook guardrails on a Clock, from the figures a worker and the ingest child
report: each alert fires when its figure crosses its limit and not before, names the
key to change, is logged once per episode and ends once its condition has gone."""
import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.config import IngestConfig, WebhookConfig
from mqttd.manage.guardrails import CLEAR_AFTER, WINDOW, Guardrails
from mqttd.manage.snapshots import flatten, snapshot
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs

WORKER = "mqttd-worker-1"
INGEST = "mqttd-ingest"


class _Tree:
    """A worker's and the ingest child's registries, as ``by_process`` gives them."""

    def __init__(self, pool_size=2):
        self.worker = Metrics()
        self.worker.webhook_pool_size = pool_size
        self.ingest = Metrics()

    def figures(self):
        return {name: flatten(snapshot(metrics, "run")["values"])
                for name, metrics in ((WORKER, self.worker), (INGEST, self.ingest))}

    def second(self, submitted=0, answered=0, latency=0.1, retried=None):
        """One second of the worker's traffic."""
        metrics = self.worker
        metrics.webhook_submitted += submitted
        for _ in range(answered):
            metrics.webhook_request_seconds.observe(latency)
        metrics.webhook_requests["committed"] += answered
        for cause, count in (retried or {}).items():
            metrics.webhook_retried[cause] += count
            metrics.webhook_requests["retryable"] += count


class GuardrailTestCase(unittest.TestCase):
    builtin = True

    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.tree = _Tree()
        # pool_size 2 x batch_size 10 / 0.1 s = 200 messages a second at most.
        self.rails = Guardrails(self.clock, attrs.evolve(WebhookConfig(), batch_size=10),
                                IngestConfig(max_queue=1000, max_queue_bytes=100_000),
                                self.metrics, builtin=self.builtin)
        self.events = capture_logs(self)

    def run_for(self, seconds, **traffic):
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            self.tree.second(**traffic)
            self.rails.evaluate(self.tree.figures())

    def names(self):
        return [(alert.name, alert.process, alert.key) for alert in self.rails.alerts()]

    def lines(self, word):
        return [e for e in self.events if word in e.get("log_format", "")]


class CapacityTests(GuardrailTestCase):
    def test_fires_when_the_inbound_rate_crosses_pool_size_over_latency_and_not_before(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(2 * WINDOW, submitted=200, answered=20)  # exactly at capacity
        self.assertEqual(self.names(), [])
        self.run_for(1, submitted=201, answered=20)  # the window's rate: 200.1 msg/s
        self.assertEqual(self.names(), [("webhook_capacity", WORKER, "webhook.pool_size")])
        (alert,) = self.rails.alerts()
        self.assertAlmostEqual(alert.value, 200.1)
        self.assertAlmostEqual(alert.limit, 200.0)
        self.assertIn("raise webhook.pool_size", alert.message)
        self.assertIn("webhook.pool_size 2 x webhook.batch_size 10 / request latency 100.0 ms",
                      alert.message)
        self.assertEqual(self.metrics.manage_alerts_active, {"webhook_capacity": 1})
        self.assertEqual(self.metrics.manage_alerts_fired, {"webhook_capacity": 1})

    def test_a_slower_webhook_lowers_the_limit(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(WINDOW, submitted=150, answered=15, latency=0.1)
        self.assertEqual(self.names(), [])
        self.run_for(WINDOW, submitted=150, answered=10, latency=0.2)  # 100 msg/s now
        self.assertEqual([name for name, *_ in self.names()], ["webhook_capacity"])

    def test_a_pool_stuck_with_no_answer_is_at_least_a_window_slow(self):
        self.rails.evaluate(self.tree.figures())
        self.tree.worker.webhook_requests_in_flight = 2
        self.run_for(WINDOW, submitted=1)  # nothing answered; 2 x 10 / 10 s = 2 msg/s
        self.assertEqual(self.names(), [])
        self.run_for(WINDOW, submitted=3)
        self.assertEqual([name for name, *_ in self.names()], ["webhook_capacity"])

    def test_a_surge_held_for_long_is_one_episode(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(3 * WINDOW, submitted=300, answered=20)
        self.assertEqual(len(self.lines("alert {name}: {message}")), 1)
        self.assertEqual(self.rails.alerts()[0].since, 1.0)


class RetryTests(GuardrailTestCase):
    def test_fires_past_a_tenth_of_the_requests_retried_naming_the_key_of_the_cause(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(WINDOW, answered=9, retried={"timeout": 1})  # 1 of 10: 10 %
        self.assertEqual(self.names(), [])
        self.run_for(1, answered=9, retried={"timeout": 2})
        self.assertEqual(self.names(), [("webhook_retries", WORKER, "webhook.request_timeout")])

    def test_the_built_in_tiers_503_names_its_queue(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(3, answered=1, retried={"http 503": 2, "connection": 1})
        self.assertEqual(self.names(), [("webhook_retries", WORKER, "ingest.max_queue")])

    def test_a_few_retries_of_few_requests_are_no_alert(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(WINDOW, retried={"timeout": 0})
        self.run_for(1, retried={"timeout": 2})  # all retried, but only two
        self.assertEqual(self.names(), [])


class ExternalWebhookTests(GuardrailTestCase):
    builtin = False

    def test_a_503_of_an_ingestion_service_of_your_own_names_webhook_url(self):
        self.rails.evaluate(self.tree.figures())
        self.run_for(3, answered=1, retried={"http 503": 3})
        self.assertEqual(self.names(), [("webhook_retries", WORKER, "webhook.url")])


class IngestQueueTests(GuardrailTestCase):
    def test_fires_at_four_fifths_of_max_queue_and_not_before(self):
        self.tree.ingest.ingest_queue_rows = 799
        self.run_for(1)
        self.assertEqual(self.names(), [])
        self.tree.ingest.ingest_queue_rows = 800
        self.run_for(1)
        self.assertEqual(self.names(), [("ingest_queue", INGEST, "ingest.max_queue")])

    def test_one_episode_is_logged_once_and_ends_after_clear_after(self):
        self.tree.ingest.ingest_queue_rows = 900
        self.run_for(5)
        self.assertEqual(len(self.lines("alert {name}: {message}")), 1)
        (alert,) = self.rails.alerts()
        self.assertEqual((alert.since, alert.value, alert.limit), (1.0, 900, 1000))
        self.assertIn("raise ingest.max_queue", alert.message)
        self.tree.ingest.ingest_queue_rows = 100
        self.run_for(CLEAR_AFTER - 1)
        self.assertEqual(len(self.rails.alerts()), 1)  # not held, not over yet
        self.tree.ingest.ingest_queue_rows = 850  # back within CLEAR_AFTER: the same one
        self.run_for(1)
        self.tree.ingest.ingest_queue_rows = 100
        self.run_for(CLEAR_AFTER)
        self.assertEqual(self.names(), [])
        self.assertEqual(len(self.lines("alert {name}: {message}")), 1)
        self.assertEqual(len(self.lines("alert {name} over")), 1)
        self.assertEqual(self.metrics.manage_alerts_active, {"ingest_queue": 0})
        self.tree.ingest.ingest_queue_rows = 1000
        self.run_for(1)
        self.assertEqual(self.metrics.manage_alerts_active, {"ingest_queue": 1})
        self.assertEqual(self.metrics.manage_alerts_fired, {"ingest_queue": 2})

    def test_bytes_too(self):
        self.tree.ingest.ingest_queue_bytes = 80_000
        self.run_for(1)
        self.assertEqual(self.names(), [("ingest_queue", INGEST, "ingest.max_queue_bytes")])
