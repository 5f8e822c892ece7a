"""The durable path's targets (issue 11, "The durable-path target, restated"), judged on
one run's medians:

* 10 connections x window 10 is bound by latency (100 messages in flight: the HTTP hop
  and the fsync add up in series): durable mqttd >= 0.75x the same appliance without
  the HTTP hop (mqttd-nohttp, --with-nohttp) in the same run;
* the throughput-bound cases (window 100, at 10 and 1,000 connections; 1,000
  connections at window 10): durable mqttd >= 0.5x mosquitto, with a load generator
  that is not the bottleneck;
* everywhere: the broker's CPU per acknowledged message <= 2x mosquitto's.

A generator-bound run's msgs/s is only a lower bound of what that broker could do, so
a ratio over such a figure is a bound too: when the bound cannot decide the target,
the verdict is UNPROVEN, never PASS.
"""
import sys

from brokers import NOHTTP
from report import fmt

THROUGHPUT_BOUND = ("qos1-w100", "qos1-w10-c1k", "qos1-w100-c1k")
LATENCY_BOUND = "qos1-w10"


def ratio_verdict(ratio, need, numerator_bound, denominator_bound):
    """PASS/FAIL/UNPROVEN for ``ratio >= need``, where a generator-bound side's figure
    is a lower bound: a bound denominator makes the ratio an upper bound, a bound
    numerator a lower bound."""
    if ratio is None:
        return "n/a"
    if ratio >= need:
        return "PASS" if not denominator_bound else "UNPROVEN"
    return "FAIL" if not numerator_bound else "UNPROVEN"


def _bound_note(pairs):
    """Which side's runs were generator-bound, with the generator's and the broker's
    cores (a broker near 1.0 is at its own limit too, if single-threaded)."""
    return "; ".join("%s GENERATOR-BOUND (generator %s, broker %s cores)" % (
        b, fmt(s.get("gen_busiest"), "{:.2f}"), fmt(s.get("broker_cores"), "{:.2f}"))
        for b, s in pairs if s.get("generator_bound"))


def evaluate(summary):
    """Rows (target, scenario, measured, needed, verdict, note), in the issue's order."""
    rows = []
    row = summary.get(LATENCY_BOUND)
    if row is not None:
        m, ref = row["targets"]["mqttd"], row["targets"].get(NOHTTP)
        if ref is None:
            rows.append(("durable >= 0.75x mqttd-nohttp", LATENCY_BOUND, "-", "0.75x", "n/a",
                         "run with --with-nohttp"))
        else:
            r = row.get("of_nohttp")
            rows.append(("durable >= 0.75x mqttd-nohttp", LATENCY_BOUND,
                         "%s/%s = %s" % (fmt(m["msgs_per_s"]), fmt(ref["msgs_per_s"]),
                                         fmt(r, "{:.3f}x")), "0.75x",
                         ratio_verdict(r, 0.75, m["generator_bound"], ref["generator_bound"]),
                         _bound_note([("mqttd", m), (NOHTTP, ref)])))
    for name in THROUGHPUT_BOUND:
        row = summary.get(name)
        if row is None:
            continue
        m, a = row["targets"]["mqttd"], row["targets"]["mosquitto"]
        rows.append(("durable >= 0.5x mosquitto", name,
                     "%s/%s = %s" % (fmt(m["msgs_per_s"]), fmt(a["msgs_per_s"]),
                                     fmt(m.get("ratio"), "{:.3f}x")), "0.5x",
                     ratio_verdict(m.get("ratio"), 0.5, m["generator_bound"], a["generator_bound"]),
                     _bound_note([("mosquitto", a), ("mqttd", m)])))
    for name, row in summary.items():
        m, a = row["targets"]["mqttd"], row["targets"]["mosquitto"]
        if "cpu_us_per_msg" not in m or not name.startswith("qos1"):
            continue
        r = m.get("cpu_ratio")
        rows.append(("CPU per acked msg <= 2x mosquitto", name,
                     "%s/%s us = %s" % (fmt(m["cpu_us_per_msg"], "{:.2f}"),
                                        fmt(a["cpu_us_per_msg"], "{:.2f}"), fmt(r, "{:.2f}x")),
                     "2x", "n/a" if r is None else "PASS" if r <= 2.0 else "FAIL", ""))
    return rows


def print_targets(summary, out=sys.stdout):
    rows = evaluate(summary)
    if not rows:
        return rows
    w = out.write
    w("\ntargets (medians across rounds, one run)\n")
    w("  %-34s %-14s %-28s %-6s %-8s %s\n" % ("target", "scenario", "measured", "needed",
                                              "verdict", "note"))
    for r in rows:
        w("  %-34s %-14s %-28s %-6s %-8s %s\n" % r)
    return rows
