"""compare.py's summary: medians over rounds per scenario and target, and the tables.

Beside every throughput figure: the load generator's CPU (cores; a run where its busiest
process used more than GENERATOR_BOUND of a core is marked GENERATOR-BOUND: the broker
may have had more to give) and the broker's CPU per message, summed over its whole
process tree, in microseconds (on 2 shared cores, the figure that holds still).
"""
import statistics
import sys

import proctree
from brokers import BASELINE, CEILING, NODELAY, NOHTTP
from scenarios import SCENARIOS, fi_name, targets_for

# Targets set by the brief for this machine (checked and printed, never enforced).
TARGET_RATIO = 0.5  # durable mqttd msgs/s >= 0.5 x mosquitto's in-memory QoS 1
TARGET_P99_MS = 10.0  # PUBACK p99 at window 10
GENERATOR_BOUND = 0.9  # cores of one load generator process


def run_figures(res, qos):
    """Per-run CPU figures from a loadgen.py result: the generator's cores (all its
    processes, and the busiest one), the broker's cores and CPU per message while
    publishing (per PUBACK for QoS 1, per publish written for QoS 0)."""
    out = {"gen_cores": res.get("loadgen_cores"), "gen_busiest": res.get("loadgen_busiest")}
    busiest = out["gen_busiest"]
    out["generator_bound"] = busiest is not None and busiest > GENERATOR_BOUND
    cpu, wall = res.get("broker_cpu_s"), res.get("run_wall_s")
    done = res.get("acked") if qos else res.get("sent")
    if cpu is not None and wall:
        out["broker_cores"] = round(cpu / wall, 3)
    if cpu is not None and done:
        out["cpu_us_per_msg"] = round(cpu / done * 1e6, 3)
        by_process = res.get("broker_cpu_by_process")
        if by_process:
            out["cpu_us_by_role"] = {role: round(v / done * 1e6, 3)
                                     for role, v in proctree.by_role(by_process).items()}
    return out


def idle_by_role(res):
    """Bytes per idle connection by role (master, workers, ingest) of one idle_rss.py
    result measured with --tree, or None."""
    delta, n = res.get("rss_delta_by_process"), res.get("still_open")
    if not delta or not n:
        return None
    return {role: round(v / n, 1) for role, v in proctree.by_role(delta).items()}


def med_by_key(dicts):
    """{key: median} over the dicts that are not None."""
    dicts = [d for d in dicts if d]
    return {k: med([d.get(k) for d in dicts]) for k in sorted({k for d in dicts for k in d})}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _durability(dur):
    return {"runs": len(dur),
            "ok": sum(1 for d in dur if d.get("ok")),
            "failed": sum(1 for d in dur if not d.get("ok")),
            **{k: sum(d.get(k) or 0 for d in dur)
               for k in ("acked", "sent", "rows", "missing", "duplicated", "foreign")}}


def _ratio(a, b):
    return round(a / b, 4) if a is not None and b else None


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
                for k in ("gen_cores", "gen_busiest", "broker_cores", "cpu_us_per_msg"):
                    s[k] = med([(r.get("figures") or {}).get(k) for r in rs])
                s["cpu_us_by_role"] = med_by_key(
                    [(r.get("figures") or {}).get("cpu_us_by_role") for r in rs])
                s["generator_bound"] = s["gen_busiest"] is not None and s["gen_busiest"] > GENERATOR_BOUND
                s["generator_bound_runs"] = sum(1 for r in rs if (r.get("figures") or {}).get("generator_bound"))
                s["connected"] = med([r.get("connected") for r in ok])
                s["error_kinds"] = sorted({k for r in ok for k in r.get("errors", {})})
                dur = [r["durability"] for r in rs if "durability" in r]
                if dur:
                    s["durability"] = _durability(dur)
            else:
                s["bytes_per_connection"] = med([r.get("bytes_per_connection") for r in ok])
                s["connected"] = med([r.get("still_open") for r in ok])
                s["bytes_by_role"] = med_by_key([idle_by_role(r) for r in ok])
                s["processes"] = max((r.get("processes") or [] for r in ok), key=len, default=[])
                s["error_kinds"] = sorted({k for r in ok for k in r.get("connect_errors", {})})
                s["errors"] += sum(sum(r.get("connect_errors", {}).values()) for r in ok)
            row["targets"][b] = s
        key = "msgs_per_s" if sc["kind"] == "load" else "bytes_per_connection"
        mosq = row["targets"]["mosquitto"]
        for b, s in row["targets"].items():
            if b != "mosquitto":
                s["ratio"] = _ratio(s.get(key), mosq.get(key))
                s["cpu_ratio"] = _ratio(s.get("cpu_us_per_msg"), mosq.get("cpu_us_per_msg"))
        single = row["targets"]["mqttd"]
        for b, s in row["targets"].items():
            if b.startswith("mqttd-w"):  # the process tree against the single process
                s["of_single"] = _ratio(s.get(key), single.get(key))
                s["cpu_of_single"] = _ratio(s.get("cpu_us_per_msg"), single.get("cpu_us_per_msg"))
        row["ratio"] = row["targets"]["mqttd"].get("ratio")
        m = row["targets"]["mqttd"].get(key)
        for ref, field in ((CEILING, "of_ceiling"), (NOHTTP, "of_nohttp"), (NODELAY, "of_nodelay"),
                           (BASELINE, "of_base")):
            if ref in row["targets"]:
                row[field] = _ratio(m, row["targets"][ref].get(key))
        if BASELINE in row["targets"]:
            row["cpu_of_base"] = _ratio(row["targets"]["mqttd"].get("cpu_us_per_msg"),
                                        row["targets"][BASELINE].get("cpu_us_per_msg"))
        summary[name] = row
    return summary


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


def _load_line(name, b, s, star):
    return "%-14s %-17s %11s %7s %-16s %5s%-2s %6s %8s %7s  %s\n" % (
        name, b, fmt(s["msgs_per_s"]), fmt(s.get("ratio"), "{:.3f}"),
        "%s/%s%s" % (fmt(s["p50_ms"], "{:.2f}"), fmt(s["p99_ms"], "{:.2f}"), star),
        fmt(s["gen_cores"], "{:.2f}"), " !" if s["generator_bound"] else "",
        fmt(s["broker_cores"], "{:.2f}"), fmt(s["cpu_us_per_msg"], "{:.2f}"),
        fmt(s.get("cpu_ratio"), "{:.2f}x"), s["errors"])


def print_table(summary, args, out=sys.stdout):
    w = out.write
    w("\n%-14s %-17s %11s %7s %-16s %7s %6s %8s %7s  %s\n" % (
        "scenario", "broker", "msgs/s", "ratio", "p50/p99 ms", "gen", "broker", "CPU us", "CPU",
        "errors"))
    w("%-14s %-17s %11s %7s %-16s %7s %6s %8s %7s\n" % (
        "", "", "", "x mosq", "", "cores", "cores", "per msg", "x mosq"))
    for name, row in summary.items():
        for b, s in row["targets"].items():
            if "msgs_per_s" in s:
                w(_load_line(name, b, s, "*" if SCENARIOS[name]["qos"] == 0 else ""))
            else:
                w("%-14s %-17s %9s B %7s open %-11s %7s %6s\n" % (
                    name, b, fmt(s["bytes_per_connection"]), fmt(s.get("ratio"), "{:.2f}"),
                    fmt(s["connected"]), "", fmt(s["broker_cpu_util"], "{:.2f}")))
    acked = ("broker core, in-memory store: NOT durable" if args.core
             else "whole appliance, SQLite write taken out: NOT durable" if args.nodisk
             else "after COMMIT")
    w("(medians of %d rounds x %g s; msgs/s = PUBACKs/s for QoS 1 (mqttd: %s), publishes\n"
      " read/s for QoS 0; ratio = msgs/s / mosquitto's; * QoS 0 latency is the PINGREQ round\n"
      " trip; gen cores = the load generator's user+sys CPU / wall while publishing, ! = its\n"
      " busiest process above %.1f of a core: GENERATOR-BOUND; broker cores and CPU us per msg\n"
      " = the broker's whole process tree while publishing, per PUBACK (QoS 0: per publish);\n"
      " idle: RSS bytes per idle connection, %d connections, fresh broker each round)\n"
      % (args.rounds, args.duration, acked, GENERATOR_BOUND, args.idle_connections))
    for field, ref, what in (("of_ceiling", CEILING, "the same appliance without its SQLite write (NOT durable)"),
                             ("of_nohttp", NOHTTP, "the same durable appliance without the webhook's HTTP request"),
                             ("of_nodelay", NODELAY, "mosquitto with set_tcp_nodelay (sessions 1-5's baseline)"),
                             ("of_base", BASELINE, "msgs/s, the A/B's baseline checkout"),
                             ("cpu_of_base", BASELINE, "CPU per msg, the A/B's baseline checkout")):
        rows = [(name, row) for name, row in summary.items() if field in row]
        if rows:
            w("durable mqttd / %s (%s, same run): %s\n" % (ref, what, ", ".join(
                "%s %s" % (name, fmt(row[field], "{:.3f}")) for name, row in rows)))
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


