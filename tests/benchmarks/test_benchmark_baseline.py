"""compare.py --with-baseline: the A/B of a hot-path change runs in the same rounds.

The baseline is another checkout's durable mqttd (its ``mqttd`` package first on
PYTHONPATH), run in every load scenario beside mqttd, with the durability check, and
reported as mqttd / mqttd-base for msgs/s and for CPU per message.
"""
import os
import sys
import tempfile

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import brokers  # noqa: E402
import compare  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402


def _record(broker, msgs, cpu_us):
    return {"broker": broker, "kind": "mqttd" if broker != "mosquitto" else "mosquitto",
            "scenario": "qos1-w100", "round": 0,
            "result": {"msgs_per_s": msgs, "connected": 10, "latency_ms": {}},
            "figures": {"cpu_us_per_msg": cpu_us, "gen_busiest": 0.1}}


class BaselineTests(unittest.TestCase):
    def test_the_baseline_runs_in_every_load_scenario(self):
        args = compare.parse_args(["--scenario", "qos1-w100", "--scenario", "idle",
                                   "--flush-intervals", "", "--with-baseline", "/tmp/base"])
        self.assertIn(brokers.BASELINE, scenarios.targets_for("qos1-w100", args))
        self.assertNotIn(brokers.BASELINE, scenarios.targets_for("idle", args))

    def test_the_baseline_runs_the_other_checkouts_package(self):
        args = compare.parse_args(["--flush-intervals", ""])
        broker = brokers.make_mqttd(tempfile.mkdtemp(), args, brokers.BASELINE,
                                    source="/tmp/base")
        self.assertEqual(broker.env["PYTHONPATH"].split(os.pathsep)[0], "/tmp/base")
        self.assertIsNotNone(broker.db)  # durable: its rows are checked as mqttd's are
        self.assertIsNone(brokers.make_mqttd(tempfile.mkdtemp(), args).env)

    def test_the_ab_is_reported_for_rate_and_cpu(self):
        args = compare.parse_args(["--scenario", "qos1-w100", "--flush-intervals", "",
                                   "--with-baseline", "/tmp/base"])
        summary = report.summarize([_record("mosquitto", 100.0, 5.0),
                                    _record("mqttd", 50.0, 10.0),
                                    _record(brokers.BASELINE, 40.0, 12.5)], args)
        self.assertAlmostEqual(summary["qos1-w100"]["of_base"], 1.25)
        self.assertAlmostEqual(summary["qos1-w100"]["cpu_of_base"], 0.8)
