"""compare.py's summary: medians over rounds per scenario and target, and the table."""
import statistics
import sys

from brokers import CEILING, NOHTTP
from scenarios import SCENARIOS, fi_name, targets_for

# Targets set by the brief for this machine (checked and printed, never enforced).
TARGET_RATIO = 0.5  # durable mqttd msgs/s >= 0.5 x mosquitto's in-memory QoS 1
TARGET_P99_MS = 10.0  # PUBACK p99 at window 10


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _durability(dur):
    return {"runs": len(dur),
            "ok": sum(1 for d in dur if d.get("ok")),
            "failed": sum(1 for d in dur if not d.get("ok")),
            **{k: sum(d.get(k) or 0 for d in dur)
               for k in ("acked", "sent", "rows", "missing", "duplicated", "foreign")}}


def summarize(records, args):
    summary = {}
    for name in args.scenario:
        sc = SCENARIOS[name]
        row = {"desc": sc["desc"], "targets": {}}
        for b in targets_for(name, args):
            rs = [r for r in records if r["broker"] == b and r["scenario"] == name]
            ok = [r["result"] for r in rs if "result" in r]
            s = {"runs": len(rs), "ok_runs": len(ok),
                 "errors": sum(r.get("error_count", 0) for r in ok) + sum(1 for r in rs if "result" not in r),
                 "broker_cpu_util": med([r.get("broker_cpu_util") for r in rs])}
            if sc["kind"] == "load":
                s["msgs_per_s"] = med([r["msgs_per_s"] for r in ok if r.get("connected")])
                lat = "latency_ms" if sc["qos"] else "ping_rtt_ms"
                s["p50_ms"] = med([(r.get(lat) or {}).get("p50") for r in ok])
                s["p99_ms"] = med([(r.get(lat) or {}).get("p99") for r in ok])
                s["loadgen_cpu_util"] = med([r.get("loadgen_cpu_util") for r in ok])
                s["connected"] = med([r.get("connected") for r in ok])
                s["error_kinds"] = sorted({k for r in ok for k in r.get("errors", {})})
                dur = [r["durability"] for r in rs if "durability" in r]
                if dur:
                    s["durability"] = _durability(dur)
            else:
                s["bytes_per_connection"] = med([r.get("bytes_per_connection") for r in ok])
                s["connected"] = med([r.get("still_open") for r in ok])
                s["error_kinds"] = sorted({k for r in ok for k in r.get("connect_errors", {})})
                s["errors"] += sum(sum(r.get("connect_errors", {}).values()) for r in ok)
            row["targets"][b] = s
        key = "msgs_per_s" if sc["kind"] == "load" else "bytes_per_connection"
        a = row["targets"]["mosquitto"].get(key)
        for b, s in row["targets"].items():
            if b != "mosquitto":
                m = s.get(key)
                s["ratio"] = round(m / a, 4) if a and m is not None else None
        row["ratio"] = row["targets"]["mqttd"].get("ratio")
        ceiling = row["targets"].get(CEILING, {}).get(key)
        if ceiling:
            m = row["targets"]["mqttd"].get(key)
            row["of_ceiling"] = round(m / ceiling, 4) if m is not None else None
        summary[name] = row
    return summary


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


def print_table(summary, args, out=sys.stdout):
    w = out.write
    w("\n%-14s %13s %13s %7s  %-18s %-18s %s\n" % (
        "scenario", "mosquitto", "mqttd", "ratio", "mosq p50/p99 ms", "mqttd p50/p99 ms",
        "errors m/q"))
    for name, row in summary.items():
        a, m = row["targets"]["mosquitto"], row["targets"]["mqttd"]
        if "msgs_per_s" in a:
            star = "*" if SCENARIOS[name]["qos"] == 0 else ""
            w("%-14s %11s/s %11s/s %7s  %-18s %-18s %s/%s\n" % (
                name, fmt(a["msgs_per_s"]), fmt(m["msgs_per_s"]), fmt(row["ratio"], "{:.3f}"),
                "%s/%s%s" % (fmt(a["p50_ms"], "{:.2f}"), fmt(a["p99_ms"], "{:.2f}"), star),
                "%s/%s%s" % (fmt(m["p50_ms"], "{:.2f}"), fmt(m["p99_ms"], "{:.2f}"), star),
                a["errors"], m["errors"]))
        else:
            w("%-14s %11s B %11s B %7s  %-18s %-18s %s/%s\n" % (
                name, fmt(a["bytes_per_connection"]), fmt(m["bytes_per_connection"]),
                fmt(row["ratio"], "{:.2f}"),
                "open %s" % fmt(a["connected"]), "open %s" % fmt(m["connected"]),
                a["errors"], m["errors"]))
    acked = ("broker core, in-memory store: NOT durable" if args.core
             else "whole appliance, SQLite write taken out: NOT durable" if args.nodisk
             else "after COMMIT")
    w("(medians of %d rounds x %g s; msgs/s = PUBACKs/s for QoS 1 (mqttd: %s), publishes\n"
      " read/s for QoS 0; ratio = mqttd/mosquitto; * QoS 0 latency is the PINGREQ round trip;\n"
      " idle: RSS bytes per idle connection, %d connections, fresh broker each round)\n"
      % (args.rounds, args.duration, acked, args.idle_connections))
    w("broker CPU (cores, median, mosquitto/mqttd): %s\n" % ", ".join(
        "%s %s/%s" % (name, fmt(row["targets"]["mosquitto"]["broker_cpu_util"], "{:.2f}"),
                      fmt(row["targets"]["mqttd"]["broker_cpu_util"], "{:.2f}"))
        for name, row in summary.items()))
    w("loadgen CPU (cores, median, mosquitto/mqttd runs): %s\n" % ", ".join(
        "%s %s/%s" % (name, fmt(row["targets"]["mosquitto"]["loadgen_cpu_util"], "{:.2f}"),
                      fmt(row["targets"]["mqttd"]["loadgen_cpu_util"], "{:.2f}"))
        for name, row in summary.items() if "loadgen_cpu_util" in row["targets"]["mosquitto"]))
    ceilings = [(name, row) for name, row in summary.items() if CEILING in row["targets"]]
    if ceilings:
        w("durable mqttd / the same appliance without its SQLite write (%s, NOT durable; same "
          "run): %s\n" % (CEILING, ", ".join(
              "%s %s (%s/s, p50/p99 %s/%s ms)" % (
                  name, fmt(row.get("of_ceiling"), "{:.3f}"),
                  fmt(row["targets"][CEILING]["msgs_per_s"]),
                  fmt(row["targets"][CEILING]["p50_ms"], "{:.2f}"),
                  fmt(row["targets"][CEILING]["p99_ms"], "{:.2f}"))
              for name, row in ceilings)))
    nohttp = [(name, row) for name, row in summary.items() if NOHTTP in row["targets"]]
    if nohttp:
        w("%s (durable, the webhook's HTTP request taken out; same run): %s\n" % (
            NOHTTP, ", ".join(
                "%s %s/s = %sx mosquitto (p50/p99 %s/%s ms)" % (
                    name, fmt(row["targets"][NOHTTP]["msgs_per_s"]),
                    fmt(row["targets"][NOHTTP].get("ratio"), "{:.3f}"),
                    fmt(row["targets"][NOHTTP]["p50_ms"], "{:.2f}"),
                    fmt(row["targets"][NOHTTP]["p99_ms"], "{:.2f}"))
                for name, row in nohttp)))
    for name, row in summary.items():
        for b, s in row["targets"].items():
            if s.get("error_kinds"):
                w("errors %s %s: %s\n" % (name, b, ", ".join(s["error_kinds"])))

    lines = []
    for name, row in summary.items():
        for b, s in row["targets"].items():
            d = s.get("durability")
            if d:
                lines.append("  %-14s %-13s %d/%d runs %-6s %s %11s, rows %11s: missing %s, "
                             "duplicated %s, foreign %s" % (
                                 name, b, d["ok"], d["runs"], "OK" if not d["failed"] else "FAILED",
                                 "acked" if SCENARIOS[name]["qos"] else "written",
                                 fmt(d["acked"] if SCENARIOS[name]["qos"] else d["sent"]),
                                 fmt(d["rows"]), fmt(d["missing"]), fmt(d["duplicated"]),
                                 fmt(d["foreign"])))
    if lines:
        w("\ndurability, summed over rounds: every acknowledged (client, sequence) one row in "
          "mqttd.db, none twice, none foreign (QoS 0: missing rows allowed)\n"
          + "\n".join(lines) + "\n")

    # flush_interval sweep
    variants = [fi_name(ms) for ms in args.flush_intervals]
    for sweep in args.sweep_scenario if variants else ():
        row = summary[sweep]
        mosq = row["targets"]["mosquitto"]
        w("\nflush_interval sweep (%s, durable, other settings default; mosquitto %s/s, "
          "p50/p99 %s/%s ms)\n" % (sweep, fmt(mosq["msgs_per_s"]),
                                  fmt(mosq["p50_ms"], "{:.2f}"), fmt(mosq["p99_ms"], "{:.2f}")))
        w("  %-16s %11s %7s %8s %8s  %s\n" % ("flush_interval", "msgs/s", "ratio", "p50 ms",
                                              "p99 ms", "targets (ratio >= %.1f; p99 <= %g ms at w10/10 conns)"
                                              % (TARGET_RATIO, TARGET_P99_MS)))
        for ms, v in zip(args.flush_intervals, variants):
            s = row["targets"][v]
            w("  %-16s %11s %7s %8s %8s  %s\n" % (
                "%g ms" % ms, fmt(s["msgs_per_s"]), fmt(s.get("ratio"), "{:.3f}"),
                fmt(s["p50_ms"], "{:.2f}"), fmt(s["p99_ms"], "{:.2f}"), verdict_targets(s, SCENARIOS[sweep])))
        s = row["targets"]["mqttd"]
        w("  %-16s %11s %7s %8s %8s  %s\n" % (
            "(mqttd default)", fmt(s["msgs_per_s"]), fmt(s.get("ratio"), "{:.3f}"),
            fmt(s["p50_ms"], "{:.2f}"), fmt(s["p99_ms"], "{:.2f}"), verdict_targets(s, SCENARIOS[sweep])))


def verdict_targets(s, sc):
    """The brief's targets: ratio everywhere; the p99 one is for window 10, 10 connections."""
    r, p99 = s.get("ratio"), s.get("p99_ms")
    if r is None or p99 is None:
        return "-"
    if sc["window"] != 10 or sc["connections"] != 10:
        p99_text = "p99 n/a"
    else:
        p99_text = "p99 ok" if p99 <= TARGET_P99_MS else "p99 MISSED"
    return "%s / %s" % ("ratio ok" if r >= TARGET_RATIO else "ratio MISSED", p99_text)


