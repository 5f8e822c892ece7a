"""The trace benchmark's verdict (trace_cost.py): medians per broker, on against off, and
a generator-bound run never read as a PASS; and the broker configs it generates."""
import io
import os
import sys
import tomllib
from contextlib import redirect_stdout

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                          "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import trace_cost  # noqa: E402


def record(broker, cpu, rate, busiest=0.1, rnd=0):
    return {"broker": broker, "scenario": "qos1-w10", "round": rnd,
            "result": {"msgs_per_s": rate, "latency_ms": {"p50": 1.0, "p99": 2.0}},
            "figures": {"cpu_us_per_msg": cpu, "gen_cores": busiest, "gen_busiest": busiest,
                        "generator_bound": busiest > 0.9, "broker_cores": 0.9,
                        "cpu_us_by_role": {"master": 1, "workers": cpu / 2, "ingest": cpu / 2}},
            "durability": {"ok": True}}


class VerdictTests(unittest.TestCase):
    def verdicts(self, records):
        args = trace_cost.parse_args(["--scenario", "qos1-w10"])
        with redirect_stdout(io.StringIO()) as out:
            verdicts = trace_cost.report(trace_cost.summarize(records, args), args, "")
        return verdicts, out.getvalue()

    def runs(self, on_cpu, on_busiest=0.1):
        return [record("mosquitto", 8, 50000), record(trace_cost.OFF, 100, 10000),
                record(trace_cost.OFF, 110, 9000, rnd=1),
                record(trace_cost.ON, on_cpu, 10000, on_busiest),
                record(trace_cost.ON, on_cpu, 10000, on_busiest, rnd=1),
                record(trace_cost.TRACED, 200, 5000)]

    def test_within_five_percent_passes(self):
        (verdict,), text = self.verdicts(self.runs(108))
        self.assertEqual(verdict[:2], ("qos1-w10", "PASS"))
        self.assertAlmostEqual(verdict[2], 108 / 105 - 1)
        self.assertIn("every client traced: CPU per message +90.5 %", text)

    def test_past_five_percent_fails_and_generator_bound_is_unproven(self):
        self.assertEqual(self.verdicts(self.runs(115))[0][0][1], "FAIL")
        self.assertEqual(self.verdicts(self.runs(115, on_busiest=0.95))[0][0][1],
                         "UNPROVEN (generator-bound)")

    def test_the_generated_configs(self):
        args = trace_cost.parse_args([])
        brokers = trace_cost.build(self.mktemp(), args)
        docs = {}
        for name in (trace_cost.OFF, trace_cost.ON):
            with open(os.path.join(brokers[name].cwd, "mqttd.toml"), "rb") as f:
                docs[name] = tomllib.load(f)
        self.assertEqual(docs[trace_cost.OFF]["manage"], {"trace_file": "", "http_listen": ""})
        self.assertEqual(docs[trace_cost.ON]["manage"]["trace_file"], "trace.jsonl")
        self.assertEqual(docs[trace_cost.ON]["server"]["workers"], 2)
