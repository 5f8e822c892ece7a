"""compare.py --with-workers: the tree against the single process, split by process.

The process tree's targets (issue 12): at most 10% of the rate lost, CPU per
acknowledged message up at most 10%, both over all processes, and under 3 kB of RSS per
idle connection; judged at their exact boundaries.
"""
import argparse
import io
import os
import sys

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import report  # noqa: E402
import scenarios  # noqa: E402
import tree_targets  # noqa: E402


def args(**kw):
    base = dict(scenario=["qos1-w10", "idle"], sweep_scenario=[], flush_intervals=[],
                with_ceiling=False, with_nohttp=False, with_mosquitto_nodelay=False,
                with_baseline=None, with_workers=[2], rounds=1, duration=1.0,
                idle_connections=10, core=False, nodisk=False)
    base.update(kw)
    return argparse.Namespace(**base)


def load_record(broker, msgs, acked, cpu_s, by_process):
    res = {"msgs_per_s": msgs, "acked": acked, "connected": 10, "run_wall_s": 1.0,
           "broker_cpu_s": cpu_s, "broker_cpu_by_process": by_process,
           "loadgen_cores": 0.1, "loadgen_busiest": 0.1, "latency_ms": {"p50": 1, "p99": 2}}
    return {"broker": broker, "scenario": "qos1-w10", "round": 0, "result": res,
            "figures": report.run_figures(res, 1)}


def idle_record(broker, per_conn, delta_by_process):
    res = {"bytes_per_connection": per_conn, "still_open": 10,
           "rss_delta_by_process": delta_by_process, "processes": sorted(delta_by_process)}
    return {"broker": broker, "scenario": "idle", "round": 0, "result": res}


def summary(tree_msgs, tree_cpu_s, tree_idle):
    records = [
        load_record("mosquitto", 100_000, 100_000, 0.5, {"mosquitto": 0.5}),
        load_record("mqttd", 10_000, 10_000, 0.2, {"twistd": 0.2}),
        load_record("mqttd-w2", tree_msgs, 10_000, tree_cpu_s,
                    {"mqttd-master": 0.0, "mqttd-worker-1": tree_cpu_s / 2,
                     "mqttd-worker-2": tree_cpu_s / 4, "mqttd-ingest": tree_cpu_s / 4}),
        idle_record("mosquitto", 1000, {"mosquitto": 10_000}),
        idle_record("mqttd", 2000, {"twistd": 20_000}),
        idle_record("mqttd-w2", tree_idle, {"mqttd-master": 1000, "mqttd-worker-1": 10 * tree_idle - 1000}),
    ]
    return report.summarize(records, args())


class TreeTargetsTests(unittest.TestCase):
    def verdicts(self, s):
        return {r[0].split(" ", 1)[1] + " " + r[1]: r[4] for r in tree_targets.evaluate(s)}

    def test_the_tree_runs_in_every_scenario_idle_too(self):
        self.assertIn("mqttd-w2", scenarios.targets_for("qos1-w10", args()))
        self.assertIn("mqttd-w2", scenarios.targets_for("idle", args()))

    def test_at_the_boundaries(self):
        v = self.verdicts(summary(9_000, 0.22, 3071))
        self.assertEqual(v, {"rate >= 0.9x mqttd qos1-w10": "PASS",
                             "CPU/msg <= 1.1x mqttd qos1-w10": "PASS",
                             "idle RSS/conn < 3 kB idle": "PASS"})
        v = self.verdicts(summary(8_999, 0.2201, 3072))
        self.assertEqual(set(v.values()), {"FAIL"})

    def test_cpu_and_rss_split_by_role(self):
        s = summary(9_000, 0.2, 3000)
        tree = s["qos1-w10"]["targets"]["mqttd-w2"]
        self.assertEqual(tree["cpu_us_by_role"], {"master": 0.0, "workers": 15.0, "ingest": 5.0})
        self.assertEqual(s["idle"]["targets"]["mqttd-w2"]["bytes_by_role"],
                         {"master": 100.0, "workers": 2900.0})
        out = io.StringIO()
        tree_targets.print_tree_targets(s, args(), out)
        self.assertIn("qos1-w10       mqttd-w2   ingest 5.00, master 0.00, workers 15.00",
                      out.getvalue())


class BatchSizeTests(unittest.TestCase):
    def test_messages_per_request_and_per_commit_over_every_process(self):
        import batch_sizes

        before = {"mqttd-ingest": {"ingest_requests{outcome=accepted}": 10, "ingest_commits": 4,
                                   "ingest_rows_committed": 1000},
                  "mqttd-worker-1": {"webhook_committed": 500}}
        after = {"mqttd-ingest": {"ingest_requests{outcome=accepted}": 30, "ingest_commits": 9,
                                  "ingest_rows_committed": 2000},
                 "mqttd-worker-1": {"webhook_committed": 1000}}
        self.assertEqual(batch_sizes.batch_figures(before, after), {
            "requests": 20, "commits": 5, "rows": 1000, "msgs_per_request": 50.0,
            "msgs_per_commit": 200.0})
