"""/metrics and /healthz of the real tree (``server.workers = 2``): after a QoS 1 load
from clients on both workers, the tree's counters add up against the rows in SQLite
(received = stored + not stored + pending at every scrape, and the webhook's and the
ingest's requests, latencies and commits too), connections by worker and by listener
sum to the clients connected, and a killed worker's counters stay added in while it
restarts.

Client ids are chosen for their worker with the balancer's hash; the children report
every second, so each figure is read once it has arrived (``wait_for_series``).
"""
import os
import signal
import threading

from mqttd.edge.balancer import Balancer
from tests.integration.support.common import wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.metrics import (health, scrape, scrape_families, series,
                                               wait_for_series)
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import wait_for_children, wait_for_new_pid

NAMES = ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")
_HOMES = Balancer((1, 2))
PER_CLIENT = 20


def _open_on(samples, slot):
    return samples.get(series("mqtt_connections_open_by_process",
                              process=f"mqttd-worker-{slot}"))


class TreeMetricsTests(BrokerTestCase):
    config = "[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"

    def setUp(self):
        super().setUp()
        self.master = self.broker.process.pid
        self.procs = wait_for_children(self.master, NAMES)
        self.url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                            context=self.context)
        wait_for(lambda: health(self.url)[0] == 200, timeout=15, message="healthz 200",
                 context=self.context)

    def clients_on(self, slot, count):
        clients, n = [], 0
        while len(clients) < count:
            n += 1
            client_id = f"m-{slot}-{n}-{os.getpid() % 10000}"
            if _HOMES.home(client_id) == slot:
                clients.append(self.client(client_id))
        return clients

    def load(self, clients):
        for client in clients:
            for i in range(PER_CLIENT):
                client.publish(f"m/{client.client_id}/{i}", b"x" * 10, qos=1)

    def test_counters_add_up_against_sqlite_after_a_qos1_load_on_both_workers(self):
        clients = self.clients_on(1, 3) + self.clients_on(2, 2)
        self.load(clients)
        sent = len(clients) * PER_CLIENT
        samples = wait_for_series(self.url, lambda s: (
            s[series("mqtt_publish_stored_total")] == sent
            and s[series("ingest_rows_inserted_total")] == sent
            and _open_on(s, 1) == 3 and _open_on(s, 2) == 2))
        rows = len(stored_messages(self.broker.db_path))
        self.assertEqual(rows, sent)
        for name in ("mqtt_publish_received_total", "mqtt_publish_stored_total",
                     "webhook_submitted_total", "webhook_committed_total",
                     "ingest_rows_committed_total", "ingest_rows_inserted_total"):
            self.assertEqual(samples[series(name)], rows, name)
        self.assertEqual(samples[series("webhook_pending")], 0)
        # Connections by worker sum to the clients connected (the master holds none).
        self.assertEqual(samples[series("mqtt_connections_open")], len(clients))
        self.assertEqual(samples[series("mqtt_connections_open_by_process",
                                        process="mqttd-master")], 0)
        self.assertEqual(samples[series("mqtt_publish_received_by_process_total",
                                        process="mqttd-worker-1")], 3 * PER_CLIENT)
        self.assertEqual(samples[series("mqtt_publish_received_by_process_total",
                                        process="mqttd-worker-2")], 2 * PER_CLIENT)
        # The master's own figures are in the same scrape: the door let every client in.
        self.assertGreaterEqual(samples[series("edge_admitted_total")], len(clients))
        for name in NAMES:
            self.assertEqual(samples[series("tree_child_reporting", process=name)], 1, name)
        self.assertEqual(health(self.url), (200, "ok\n"))

    def test_publishes_add_up_at_every_scrape_and_the_webhook_and_ingest_figures_too(self):
        clients = self.clients_on(1, 2) + self.clients_on(2, 2)
        loading = threading.Thread(target=self.load, args=(clients,))
        loading.start()
        self.addCleanup(loading.join)
        identity = []
        while loading.is_alive() or not identity:
            samples = scrape(self.url)
            received = samples[series("mqtt_publish_received_total")]
            parts = (samples[series("mqtt_publish_stored_total")],
                     samples[series("mqtt_publish_not_stored_total")],
                     samples[series("mqtt_publish_pending")])
            # Each process's snapshot is one moment of it: the sum holds in every scrape.
            self.assertEqual(received, sum(parts), (received, parts))
            identity.append((received, parts))
        loading.join()
        sent = len(clients) * PER_CLIENT
        samples = wait_for_series(self.url, lambda s: (
            s[series("mqtt_publish_stored_total")] == sent
            and s[series("mqtt_publish_pending")] == 0
            and s[series("ingest_rows_inserted_total")] == sent))
        rows = len(stored_messages(self.broker.db_path))
        self.assertEqual(rows, sent)
        self.assertEqual(samples[series("mqtt_publish_received_total")], rows)
        self.assertEqual(samples[series("mqtt_publish_not_stored_total")], 0)
        # Every request answered is in the latency histogram; both workers' pools count.
        requests = samples[series("webhook_requests_total", outcome="committed")]
        self.assertGreater(requests, 0)
        self.assertEqual(samples[series("webhook_request_seconds_count")], requests)
        self.assertEqual(samples[series("webhook_request_seconds_bucket", le="+Inf")], requests)
        self.assertGreater(samples[series("webhook_request_seconds_sum")], 0)
        self.assertEqual(samples[series("webhook_pool_size")], 2)  # pool_size 1 x 2 workers
        self.assertEqual(samples[series("webhook_requests_in_flight")], 0)
        commits = samples[series("ingest_commits_total")]
        self.assertEqual(samples[series("ingest_commit_seconds_count")], commits)
        self.assertEqual(samples[series("ingest_queue_rows")], 0)
        # Connections by listener: the one listener holds the clients (and no other).
        self.assertEqual(samples[series("edge_connections_open_by_listener",
                                        listener="server.listen[0]")], len(clients))
        self.assertGreaterEqual(samples[series("edge_admitted_by_listener_total",
                                               listener="server.listen[0]")], len(clients))
        kinds = {family.name: family.type for family in scrape_families(self.url)}
        self.assertEqual(kinds["webhook_request_seconds"], "histogram")
        self.assertEqual(kinds["ingest_commit_seconds"], "histogram")

    def test_a_killed_workers_counters_stay_added_in_while_it_restarts(self):
        before = self.clients_on(1, 2)
        self.load(before)
        stored = 2 * PER_CLIENT
        wait_for_series(self.url, lambda s: s[series("mqtt_publish_stored_total")] == stored
                        and _open_on(s, 1) == 2)
        os.kill(self.procs["mqttd-worker-1"], signal.SIGKILL)
        seen = []

        def restarted():
            samples = scrape(self.url)
            seen.append(samples[series("mqtt_publish_stored_total")])
            status, _ = health(self.url)
            return status == 200 and samples.get(
                series("tree_restarts_total", child="mqttd-worker-1")) == 1
        wait_for(restarted, timeout=15, interval=0.1, message="worker 1 back, healthy",
                 context=self.context)
        wait_for_new_pid(self.master, NAMES, "mqttd-worker-1", self.procs["mqttd-worker-1"])
        self.assertEqual(min(seen), stored)  # never backwards, not while it was down either
        after = self.clients_on(1, 1)
        self.load(after)
        samples = wait_for_series(
            self.url, lambda s: s[series("mqtt_publish_stored_total")] == stored + PER_CLIENT)
        self.assertEqual(len(stored_messages(self.broker.db_path)), stored + PER_CLIENT)
        self.assertEqual(_open_on(samples, 1), 1)  # the dead run's clients are gone
        self.assertEqual(samples[series("mqtt_publish_received_by_process_total",
                                        process="mqttd-worker-1")], stored + PER_CLIENT)

    def test_healthz_is_503_naming_a_worker_that_is_down(self):
        os.kill(self.procs["mqttd-worker-2"], signal.SIGSTOP)
        self.addCleanup(os.kill, self.procs["mqttd-worker-2"], signal.SIGCONT)
        status, body = wait_for(
            lambda: (lambda answer: answer if answer[0] == 503 else None)(health(self.url)),
            timeout=10, message="healthz 503", context=self.context)
        self.assertEqual(body, "mqttd-worker-2 silent for " + body.split(" for ")[1])
        self.assertEqual(scrape(self.url)[series("tree_child_reporting",
                                                 process="mqttd-worker-2")], 0)
        os.kill(self.procs["mqttd-worker-2"], signal.SIGCONT)
        wait_for(lambda: health(self.url)[0] == 200, timeout=10, message="healthz back",
                 context=self.context)
