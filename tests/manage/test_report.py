"""The incident report from an appliance on a Clock: each section from the pieces that
know it, the metrics it looks up by name (present or not yet), and its text."""
import json
from collections import Counter

from mqttd.edge.door import MAX_CONN_RATE_PER_IP
from mqttd.manage.report import (NOT_CONFIGURED, NOT_MEASURED, build_report, quantile,
                                 refusal_totals, report_lines)
from mqttd.manage.tree_metrics import Family
from mqttd.store.gate_records import BanRecord
from tests.support.manage import ApplianceCase


def histogram(name, buckets):
    """A histogram family of cumulative ``buckets`` {le: count}."""
    return Family(name, "histogram", "", tuple(({"le": str(le)}, n) for le, n in buckets.items()))


class ReportTests(ApplianceCase):
    document = dict(ApplianceCase.document,
                    limits={"allowlist": [], "max_conn_rate_per_ip": 1.0, "conn_rate_burst": 5})

    def test_the_storming_address_is_first_by_connects_and_by_connections(self):
        self.refusals.startService()
        self.addCleanup(self.refusals.stopService)
        for _ in range(3):
            self.admit("10.0.0.1")
        self.clock.advance(10)
        refused = [self.admit("10.0.0.7") for _ in range(50)]
        self.assertEqual(sum(r is not None for r in refused), 45)  # past the burst
        report = build_report(self.view)
        top = report["top_ips"]
        self.assertEqual([(r["ip"], r["connects"]) for r in top["by_connect_rate"]],
                         [("10.0.0.7", 50), ("10.0.0.1", 3)])
        self.assertEqual([(r["ip"], r["open"]) for r in top["by_connections"]],
                         [("10.0.0.7", 5), ("10.0.0.1", 3)])
        minute = report["refusals"]["last_minute"]
        self.assertEqual(minute["by_limit"], {MAX_CONN_RATE_PER_IP: 45})
        self.assertEqual(report["refusals"]["last_day"]["by_limit"], {MAX_CONN_RATE_PER_IP: 45})
        for _ in range(7):  # the history samples every 10 s
            self.clock.advance(10)
        later = build_report(self.view)["refusals"]
        self.assertEqual(later["last_minute"]["by_limit"], {})
        self.assertEqual(later["last_hour"]["by_limit"], {MAX_CONN_RATE_PER_IP: 45})
        json.dumps(report)

    def test_flapping_clients_and_bans(self):
        self.view.config = self.config  # flapping_detect on by default: 15 within 60 s
        for n in range(4):
            result = self.admit("10.0.0.3", "flappy")
            result.ticket.release()
            self.door.release("10.0.0.3")
        self.gate.ban(BanRecord("clientid", "bad", "flapping", "15 disconnects",
                                self.clock.seconds(), self.clock.seconds() + 300))
        self.gate.ban(BanRecord("ip", "10.9.9.9", "manhole admin", "", self.clock.seconds()))
        report = build_report(self.view)
        self.assertEqual(report["flapping"]["clients"][0]["value"], "flappy")
        self.assertEqual(report["flapping"]["clients"][0]["disconnects"], 4)
        self.assertEqual(report["flapping"]["bans"], 1)
        self.assertEqual(report["bans"]["active"], 2)
        self.assertEqual(report["bans"]["by_kind"], {"clientid": 1, "ip": 1})

    def test_webhook_and_ingest_figures_before_any_request(self):
        self.report_child("mqttd-worker-1", webhook_retried={"timeout": 3}, webhook_submitted=9,
                          webhook_pool_size=4)
        self.report_child("mqttd-ingest", ingest_commits=2)
        report = build_report(self.view)
        latency = report["webhook"]["latency"]
        self.assertEqual((latency["metric"], latency["p50"]), ("webhook_request_seconds", None))
        self.assertEqual(report["webhook"]["pool_in_use"],
                         {"metric": "webhook_requests_in_flight", "value": 0, "of": 4})
        self.assertEqual(report["webhook"]["retries"]["total"], 3)
        self.assertEqual(report["webhook"]["retries"]["by_cause"], {"timeout": 3})
        self.assertEqual(report["webhook"]["figures"]["webhook_submitted"], 9)
        self.assertEqual(report["ingest"]["queue_depth"]["metric"], "ingest_queue_rows")
        self.assertEqual(report["ingest"]["figures"]["ingest_commits"], 2)
        # No Watch in this view: no canary, no gap detection, no alerts.
        self.assertEqual((report["canary"], report["data_gaps"], report["alerts"]),
                         (NOT_CONFIGURED, NOT_CONFIGURED, []))

    def test_a_metric_missing_from_the_registry_is_not_measured(self):
        self.view.families = lambda: []
        report = build_report(self.view)
        self.assertEqual(report["webhook"]["latency"], NOT_MEASURED)
        self.assertEqual(report["ingest"]["queue_depth"], NOT_MEASURED)

    def test_histograms_and_gauges_are_read_by_their_names(self):
        replaced = {"webhook_request_seconds", "ingest_commit_seconds",
                    "webhook_requests_in_flight", "webhook_pool_size", "ingest_queue_rows"}
        families = [f for f in self.tree.families() if f.name not in replaced] + [
            histogram("webhook_request_seconds", {0.01: 50, 0.1: 99, 1.0: 100,
                                                 float("inf"): 100}),
            histogram("ingest_commit_seconds", {0.005: 10, float("inf"): 10}),
            Family("webhook_requests_in_flight", "gauge", "", (({}, 3),)),
            Family("webhook_pool_size", "gauge", "", (({}, 8),)),
            Family("ingest_queue_rows", "gauge", "", (({}, 120),)),
        ]
        self.view.families = lambda: families
        report = build_report(self.view)
        latency = report["webhook"]["latency"]
        self.assertEqual(latency["metric"], "webhook_request_seconds")
        self.assertAlmostEqual(latency["p50"], 0.01)
        self.assertAlmostEqual(latency["p99"], 0.1)
        self.assertEqual(report["webhook"]["pool_in_use"]["value"], 3)
        self.assertEqual(report["ingest"]["queue_depth"]["value"], 120)
        self.assertEqual(report["ingest"]["commit_latency"]["metric"], "ingest_commit_seconds")
        text = "\n".join(report_lines(report))
        self.assertIn("latency: p50 0.01 s, p99 0.1 s (webhook_request_seconds)", text)
        self.assertIn("pool in use: 3 of 8 (webhook_requests_in_flight)", text)

    def test_alerts_canary_and_gaps_come_from_the_watch(self):
        class _Watch:
            def alerts(self):
                return [{"name": "webhook_capacity", "process": "mqttd-worker-1",
                         "key": "webhook.pool_size", "message": "raise it", "value": 2,
                         "limit": 1, "since": 0.0}]

            def canary_status(self):
                return {"enabled": True, "state": "ok"}

            def gaps(self):
                return [{"client_id": "dev-1", "account": None, "last_seen": 1.0,
                         "silent_for": 50.0, "usual_interval": 10.0, "process": "mqttd"}]
        self.view.watch = _Watch()
        report = build_report(self.view)
        self.assertEqual(report["canary"]["state"], "ok")
        self.assertEqual(report["data_gaps"][0]["client_id"], "dev-1")
        text = "\n".join(report_lines(report))
        self.assertIn("webhook_capacity (mqttd-worker-1): raise it [webhook.pool_size]", text)
        self.assertIn("Canary: state ok", text)
        self.assertIn("dev-1", text)

    def test_processes_with_connections_restarts_and_reporting(self):
        self.tree.started("mqttd-worker-1")
        self.tree.started("mqttd-worker-2")
        self.report_child("mqttd-worker-1", mqtt_connections_open=4)
        self.metrics.tree_restarts["mqttd-worker-2"] += 2
        self.clock.advance(6)  # worker 2 never reported: silent
        self.report_child("mqttd-worker-1", run="r1", mqtt_connections_open=4)
        workers = {w["process"]: w for w in build_report(self.view)["workers"]}
        self.assertEqual((workers["mqttd-worker-1"]["connections"],
                          workers["mqttd-worker-1"]["reporting"]), (4, True))
        self.assertEqual((workers["mqttd-worker-2"]["restarts"],
                          workers["mqttd-worker-2"]["reporting"]), (2, False))

    def test_the_text_has_every_section(self):
        self.admit("10.0.0.7")
        text = "\n".join(report_lines(build_report(self.view)))
        for heading in ("Top IPs by connections open:", "Top IPs by connects over the last",
                        "Flapping (", "Bans in force: 0", "Refusals by limit:",
                        "last minute", "last hour", "last day", "Webhook to built-in ingest",
                        "Ingest (max_queue", "Canary: not configured",
                        "Data gaps: not configured", "Processes:"):
            self.assertIn(heading, text)
        self.assertIn("  10.0.0.7", text)


class PieceTests(ApplianceCase):
    def test_quantile_interpolates_within_a_bucket(self):
        family = histogram("h", {1.0: 0, 2.0: 100, float("inf"): 100})
        self.assertAlmostEqual(quantile(family, 0.5), 1.5)
        self.assertIsNone(quantile(histogram("h", {1.0: 0, float("inf"): 0}), 0.5))
        self.assertEqual(quantile(histogram("h", {1.0: 0, float("inf"): 5}), 0.99), 1.0)

    def test_refusal_totals_name_the_limit(self):
        self.metrics.edge_refused.update(Counter({"limits.banned": 2}))
        self.metrics.edge_gate_refused["bad token"] += 3
        self.report_child("mqttd-worker-1", mqtt_sessions_refused=1)
        totals = refusal_totals(self.tree.families())
        self.assertEqual({k: v for k, v in totals.items() if v},
                         {"limits.banned": 2, "gate: bad token": 3, "broker.max_sessions": 1})
