"""/metrics in Prometheus' text format, read back with prometheus_client's own parser,
and /healthz, rendered by the manage site's resources."""
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from mqttd.manage.http import manage_site
from mqttd.manage.tree_metrics import TreeMetrics, snapshot
from mqttd.metrics import Metrics


def _render(site, path):
    request = DummyRequest([path])
    resource = site.getResourceFor(request)
    body = resource.render(request)
    return request, body


class MetricsPageTests(unittest.TestCase):
    def setUp(self):
        self.master = Metrics()
        self.tree = TreeMetrics(Clock(), self.master, "mqttd-master")
        self.site = manage_site(self.tree.families, lambda: (True, "ok"))

    def scrape(self):
        request, body = _render(self.site, b"metrics")
        self.assertEqual(request.responseCode or 200, 200)
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0]
                        .startswith(b"text/plain; version=0.0.4"))
        families = {family.name: family
                    for family in text_string_to_metric_families(body.decode("utf-8"))}
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in families.values() for sample in family.samples}
        return families, samples

    def test_the_tree_parses_back_as_prometheus_reads_it(self):
        self.master.edge_gate_refused['bad "token"\\'] += 2
        self.master.tree_restarts["mqttd-worker-1"] += 1
        worker = Metrics()
        worker.mqtt_publish_received = 41
        worker.mqtt_connections_open = 3
        self.tree.report("mqttd-worker-1", snapshot(worker, "a"))
        ingest = Metrics()
        ingest.ingest_rows_committed = 41
        self.tree.report("mqttd-ingest", snapshot(ingest, "b"))
        families, samples = self.scrape()
        self.assertEqual(families["mqtt_publish_received"].type, "counter")
        self.assertEqual(families["mqtt_connections_open"].type, "gauge")
        self.assertEqual(families["mqtt_publish_received"].documentation,
                         Metrics.__attrs_attrs__.mqtt_publish_received.metadata["help"])
        self.assertEqual(samples[("mqtt_publish_received_total", ())], 41)
        self.assertEqual(samples[("ingest_rows_committed_total", ())], 41)
        self.assertEqual(samples[("mqtt_connections_open", ())], 3)
        self.assertEqual(samples[("edge_gate_refused_total", (("reason", 'bad "token"\\'),))], 2)
        self.assertEqual(samples[("tree_restarts_total", (("child", "mqttd-worker-1"),))], 1)
        self.assertEqual(samples[("mqtt_connections_open_by_process",
                                  (("process", "mqttd-worker-1"),))], 3)
        self.assertEqual(samples[("tree_child_reporting", (("process", "mqttd-ingest"),))], 1)

    def test_a_histogram_merged_over_workers_parses_with_cumulative_buckets(self):
        for slot, observed in ((1, (0.003, 0.2)), (2, (0.2, 40.0))):
            worker = Metrics()
            for seconds in observed:
                worker.webhook_request_seconds.observe(seconds)
            self.tree.report(f"mqttd-worker-{slot}", snapshot(worker, str(slot)))
        families, samples = self.scrape()
        self.assertEqual(families["webhook_request_seconds"].type, "histogram")
        self.assertEqual(samples[("webhook_request_seconds_bucket", (("le", "0.0025"),))], 0)
        self.assertEqual(samples[("webhook_request_seconds_bucket", (("le", "0.005"),))], 1)
        self.assertEqual(samples[("webhook_request_seconds_bucket", (("le", "0.25"),))], 3)
        self.assertEqual(samples[("webhook_request_seconds_bucket", (("le", "30.0"),))], 3)
        self.assertEqual(samples[("webhook_request_seconds_bucket", (("le", "+Inf"),))], 4)
        self.assertEqual(samples[("webhook_request_seconds_count", ())], 4)
        self.assertAlmostEqual(samples[("webhook_request_seconds_sum", ())], 40.403)

    def test_every_family_of_the_registry_is_there_even_at_zero(self):
        families, samples = self.scrape()
        for field in Metrics.__attrs_attrs__:
            self.assertIn(field.name, families)
            if field.metadata["kind"] == "histogram":
                self.assertEqual(samples[(field.name + "_count", ())], 0)
                self.assertEqual(samples[(field.name + "_bucket", (("le", "+Inf"),))], 0)
            elif not field.metadata["labels"]:
                suffix = "_total" if field.metadata["kind"] == "counter" else ""
                self.assertEqual(samples[(field.name + suffix, ())], 0)

    def test_other_paths_are_not_found(self):
        request, _ = _render(self.site, b"nothing")
        self.assertEqual(request.responseCode, 404)


class HealthPageTests(unittest.TestCase):
    def test_ok_is_200_and_a_problem_is_503_with_its_reason(self):
        answer = [(True, "ok")]
        site = manage_site(lambda: (), lambda: answer[0])
        request, body = _render(site, b"healthz")
        self.assertEqual((request.responseCode, body), (200, b"ok\n"))
        answer[0] = (False, "mqttd-worker-2 not ready")
        request, body = _render(site, b"healthz")
        self.assertEqual((request.responseCode, body), (503, b"mqttd-worker-2 not ready\n"))
