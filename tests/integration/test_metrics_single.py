"""/metrics and /healthz of the single process (``server.workers = 0``): its one
registry, summed as the tree's would be, against the rows in SQLite; and a /metrics port
that is not on loopback stops start-up naming its key."""
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.common import wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.metrics import health, scrape_families, series, wait_for_series
from tests.integration.support.process import ANONYMOUS, requires_mqttd, run_twistd_mqttd
from tests.integration.support.testcase import BrokerTestCase


@requires_mqttd("mqttd's /metrics")
class SingleProcessMetricsTests(BrokerTestCase):
    # The single process on purpose: the default is the tree (test_metrics_tree).
    config = ANONYMOUS + "[server]\nworkers = 0\n"

    def test_counters_add_up_against_sqlite_after_a_qos1_load(self):
        url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                       context=self.context)
        # Healthy once the retained messages and sessions are loaded (a loaded host: soon).
        wait_for(lambda: health(url) == (200, "ok\n"), message="healthy",
                 context=self.context)
        clients = [self.client() for _ in range(3)]
        for client in clients:
            for i in range(15):
                client.publish(f"s/{i}", b"payload", qos=1)
        samples = wait_for_series(url, lambda s: s[series("ingest_rows_inserted_total")] == 45)
        rows = len(stored_messages(self.broker.db_path))
        self.assertEqual(rows, 45)
        for name in ("mqtt_publish_received_total", "mqtt_publish_stored_total",
                     "webhook_committed_total", "ingest_rows_committed_total"):
            self.assertEqual(samples[series(name)], rows, name)
        self.assertEqual(samples[series("mqtt_connections_open")], 3)
        self.assertEqual(samples[series("mqtt_connections_open_by_process", process="mqttd")], 3)
        kinds = {family.name: family.type for family in scrape_families(url)}
        self.assertEqual((kinds["mqtt_publish_stored"], kinds["mqtt_connections_open"]),
                         ("counter", "gauge"))
        self.assertNotIn("tree_child_reporting", kinds)


@requires_mqttd("mqttd's manage.http_listen")
class RemoteMetricsRefusedTests(SynchronousTestCase):
    def test_a_non_loopback_address_stops_start_up_in_one_line(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        path = os.path.join(workdir, "mqttd.toml")
        with open(path, "w") as f:
            f.write('[manage]\nhttp_listen = "tcp:0:interface=0.0.0.0"\n')
        result = run_twistd_mqttd(["--config", path, "--listen", "tcp:0:interface=127.0.0.1",
                                   "--data-dir", os.path.join(workdir, "data")],
                                  cwd=workdir, http_listen=None)
        output = (result.stdout + result.stderr).strip()
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn("mqttd: configuration error: manage.http_listen: listens on 0.0.0.0, "
                      "not on a loopback address", output)
        self.assertIn("manage.http_allow_remote = true", output)
        self.assertNotIn("Traceback", output)
