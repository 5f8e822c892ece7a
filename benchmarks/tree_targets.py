"""The process tree's targets (issue 12), judged on one compare.py run's medians:

* durable QoS 1 with ``server.workers = N`` against 0 (mqttd-wN against mqttd, same
  rounds): it loses no more than 10% of the rate (>= 0.9x), and its CPU per
  acknowledged message, summed over all its processes, rises no more than 10%
  (<= 1.1x);
* RSS per idle connection over all its processes under 3 kB (3,072 bytes).

A rate measured while the generator was the bottleneck is a bound (targets.ratio_verdict).
Besides the verdicts, each tree's CPU per message and idle bytes per connection are
split by role (master, workers, ingest), so a miss says where it is.
"""
import sys

from report import fmt
from targets import ratio_verdict

MAX_RATE_LOSS = 0.9  # tree msgs/s >= 0.9x the single process's
MAX_CPU_RISE = 1.1  # tree CPU per message <= 1.1x the single process's
MAX_IDLE_BYTES = 3072  # RSS per idle connection, all processes


def _trees(row):
    return [(b, s) for b, s in row["targets"].items() if b.startswith("mqttd-w")]


def evaluate(summary):
    """Rows (target, scenario, measured, needed, verdict, note)."""
    rows = []
    for name, row in summary.items():
        single = row["targets"].get("mqttd")
        for b, s in _trees(row):
            if "msgs_per_s" in s and name.startswith("qos1"):
                r = s.get("of_single")
                rows.append(("%s rate >= 0.9x mqttd" % b, name, "%s/%s = %s" % (
                    fmt(s["msgs_per_s"]), fmt(single["msgs_per_s"]), fmt(r, "{:.3f}x")),
                    "0.9x", ratio_verdict(r, MAX_RATE_LOSS, s["generator_bound"],
                                          single["generator_bound"]), ""))
                c = s.get("cpu_of_single")
                rows.append(("%s CPU/msg <= 1.1x mqttd" % b, name, "%s/%s us = %s" % (
                    fmt(s["cpu_us_per_msg"], "{:.2f}"), fmt(single["cpu_us_per_msg"], "{:.2f}"),
                    fmt(c, "{:.3f}x")), "1.1x",
                    "n/a" if c is None else "PASS" if c <= MAX_CPU_RISE else "FAIL", ""))
            elif "bytes_per_connection" in s:
                v = s.get("bytes_per_connection")
                rows.append(("%s idle RSS/conn < 3 kB" % b, name, "%s B" % fmt(v), "3,072 B",
                             "n/a" if v is None else "PASS" if v < MAX_IDLE_BYTES else "FAIL",
                             "processes: " + ", ".join(s.get("processes") or ())))
    return rows


def _split(values, spec):
    return ", ".join("%s %s" % (k, fmt(v, spec)) for k, v in sorted(values.items()))


def print_tree_targets(summary, args, out=sys.stdout):
    rows = evaluate(summary)
    if not rows:
        return rows
    w = out.write
    w("\nby process (medians): CPU us per acked msg / RSS bytes per idle connection\n")
    for name, row in summary.items():
        for b, s in [("mqttd", row["targets"]["mqttd"])] + _trees(row):
            if s.get("cpu_us_by_role"):
                w("  %-14s %-10s %s\n" % (name, b, _split(s["cpu_us_by_role"], "{:.2f}")))
            if s.get("bytes_by_role"):
                w("  %-14s %-10s %s\n" % (name, b, _split(s["bytes_by_role"], "{:,.0f}")))
    w("\nprocess tree targets (issue 12)\n")
    for r in rows:
        w("  %-30s %-14s %-28s %-7s %-8s %s\n" % r)
    return rows
