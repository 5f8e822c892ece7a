"""A webhook guardrail against the real tree (issue 14): the incident's root cause, a
webhook pool too small for the load, said as an alert that names the key to change.

One worker with ``webhook.pool_size = 1`` and ``webhook.batch_size = 1``; the ingest
child is stopped (SIGSTOP), so its one request never comes back and the pool carries
nothing while QoS 1 publishes keep coming. The ``webhook_capacity`` rule fires within a
few evaluations: ``mqttd report`` (JSON and text) names ``webhook.pool_size``, the log
has its line, ``manage_alerts_active{alert="webhook_capacity"}`` is 1. Every wait polls
its condition; the timeouts only bound a broken run.
"""
import os
import signal

from mqttd.manage.report_cli import fetch_report
from tests.integration.support.cli import mqttd_command
from tests.integration.support.common import wait_for
from tests.integration.support.manhole import report_url
from tests.integration.support.metrics import health, scrape, series
from tests.integration.support.process import requires_mqttd
from tests.integration.support.raw_client import publish_packet
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import wait_for_children

PUBLISHES = 20


@requires_mqttd("mqttd's guardrails")
class WebhookCapacityTests(BrokerTestCase):
    # The commits and acks wait longer than the test runs: nothing but the capacity
    # rule's condition holds (no retry, no ack timeout).
    config = ("[auth]\nallow_anonymous = true\n[server]\nworkers = 1\n"
              "[webhook]\npool_size = 1\nbatch_size = 1\nrequest_timeout = 60.0\n"
              "ack_timeout = 60.0\n")

    def alert(self, url):
        """The webhook_capacity alert of ``mqttd report``'s JSON, or None."""
        for alert in fetch_report(url)["alerts"]:
            if alert["name"] == "webhook_capacity":
                return alert
        return None

    def test_a_stalled_pool_under_qos1_load_names_webhook_pool_size(self):
        metrics = wait_for(lambda: self.broker.metrics_url, message="the metrics URL",
                           context=self.context)
        wait_for(lambda: health(metrics)[0] == 200, timeout=20, message="healthz 200",
                 context=self.context)
        url = report_url(self.broker)
        self.assertIsNone(self.alert(url))  # a calm tree: no alert
        ingest = wait_for_children(self.broker.process.pid, ("mqttd-ingest",))["mqttd-ingest"]
        os.kill(ingest, signal.SIGSTOP)
        self.addCleanup(os.kill, ingest, signal.SIGCONT)

        publisher = self.raw()
        self.assertEqual(publisher.connect(client_id=self.new_id("load"))[0], 0)
        for packet_id in range(1, PUBLISHES + 1):
            publisher.send(publish_packet("load/t", b"x" * 16, qos=1, packet_id=packet_id))

        alert = wait_for(lambda: self.alert(url), timeout=15, interval=0.2,
                         message="the webhook_capacity alert in the report",
                         context=self.context)
        self.assertEqual((alert["key"], alert["process"]), ("webhook.pool_size",
                                                            "mqttd-worker-1"))
        self.assertIn("raise webhook.pool_size", alert["message"])
        self.assertGreater(alert["value"], alert["limit"])  # the inbound rate over capacity
        text = mqttd_command("report", "--url", url)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("webhook_capacity", text.stdout)
        self.assertIn("[webhook.pool_size]", text.stdout)
        self.assertIn("alert webhook_capacity: mqttd-worker-1: the webhook carries at most",
                      self.broker.output())
        samples = scrape(metrics)
        self.assertEqual(samples[series("manage_alerts_active", alert="webhook_capacity")], 1)
        self.assertEqual(samples[series("manage_alerts_fired_total", alert="webhook_capacity")],
                         1)
        # Not one PUBACK while the ingest is stopped: nothing was acknowledged unstored.
        self.assertIsNone(publisher.poll_packet(0.2))
