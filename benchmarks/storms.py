#!/usr/bin/env python3
"""The process tree under connection storms, beside mosquitto, in one run (issue 12).

Three scenarios, each against Debian's mosquitto (defaults + persistence false +
anonymous, brokers.py), the single-process mqttd (``server.workers = 0``) and the tree
(``--workers``, default 2), rounds in rotating order, medians:

* ``connect``: connect_storm.py from 20 loopback addresses (127.0.0.1..20, inside the
  default ``limits.allowlist``, so the per-IP limits do not apply), 64 handshakes in
  flight, each connection closed with a DISCONNECT right after its CONNACK: accepted
  connects per second through the master, its latency, the generator's CPU, and the
  broker's CPU per connect by process (master, workers, ingest);
* ``connect-keep``: the same, but every connection is kept open until the last of
  ``--keep`` (10,000) has its CONNACK: a fleet coming back at once;
* ``isolation``: 50 well-behaved clients (loadgen.py, QoS 1, window 1: one message in
  flight each, paced at 20 publishes a second each, 127.0.0.1..10) publish alone
  ("quiet"), and again while one address, 127.0.0.99, floods (connect_storm.py: as fast
  as it goes, 128 in flight, each admitted connection held 0.5 s). mqttd runs with
  ``limits.allowlist = []`` and a per-IP cap and rate (``--max-conn-per-ip``,
  ``--max-conn-rate-per-ip``, ``--conn-rate-burst``). Per run: the publishers' PUBACK
  p99 quiet and under the storm, their messages checked against mqttd.db (durability.py:
  every acknowledged one stored once), the flood's outcomes as its client saw them, and
  the door's ``edge_refused`` by limit (read from the process through metrics_mqttd.py)
  with the log's refusal lines as a cross-check. ``--flood-nice 19`` runs the flood at
  the lowest CPU priority: on 2 shared cores the flood client itself takes a whole core,
  which a flood from another host would not.

    .venv/bin/python benchmarks/storms.py                      # all three, 3 rounds
    .venv/bin/python benchmarks/storms.py --scenario connect --rounds 5 --duration 5
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from brokers import make_mosquitto, make_mqttd, running, tree_name, tree_overrides  # noqa: E402
from durability import check_run  # noqa: E402
from report import GENERATOR_BOUND, fmt, med  # noqa: E402
import proctree  # noqa: E402

FLOOD_SOURCE = "127.0.0.99"
CONNECT_TARGET = 5000.0  # accepted connects a second through the master
P99_TARGET = 2.0  # storm p99 / quiet p99

_REFUSED_LINE = re.compile(r"refused (\S+) at accept: .* \(([a-z_.]+)\)")
_SUPPRESSED_LINE = re.compile(r"suppressed (\d+) log lines from (\S+) ")


# -- log and counters ---------------------------------------------------------------------

def log_refusals(text, peer):
    """{limit: lines} of the door's refusal lines about ``peer`` in ``text``, and the
    lines the per-address budget held back (their limit is not logged)."""
    out = {}
    for m in _REFUSED_LINE.finditer(text):
        if m.group(1) == peer:
            out[m.group(2)] = out.get(m.group(2), 0) + 1
    held = sum(int(m.group(1)) for m in _SUPPRESSED_LINE.finditer(text) if m.group(2) == peer)
    return out, held


def refused_by_limit(before, after, counter="edge_refused", label="limit"):
    """{limit: refusals} between two read_metrics() dumps ({process: {series: value}}),
    over every process (only the one with the door counts them); ``counter`` and
    ``label`` name another labelled counter (the gate's ``edge_gate_refused``, reason)."""
    if before is None or after is None:
        return None
    out = {}
    for name, series in after.items():
        for key, value in series.items():
            m = re.fullmatch(r"%s\{%s=(.+)\}" % (counter, label), key)
            delta = value - before.get(name, {}).get(key, 0)
            if m and delta:
                out[m.group(1)] = out.get(m.group(1), 0) + delta
    return out


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_from(path, offset):
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


# -- runs -----------------------------------------------------------------------------------

def run_tool(argv, timeout):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError("%s: exit %s: %s" % (os.path.basename(argv[1]), p.returncode,
                                                p.stderr.strip()[-400:]))
    return json.loads(lines[-1])


def storm_argv(port, args, prefix, extra):
    return [sys.executable, os.path.join(HERE, "connect_storm.py"), "--port", str(port),
            "--client-prefix", prefix] + extra


def per_connect(res):
    """Broker CPU per accepted connect, in microseconds, by role and in all."""
    by = res.get("broker_cpu_by_process") or {}
    n = res.get("connacks") or 0
    if not n:
        return {}
    out = {role: round(v / n * 1e6, 1) for role, v in proctree.by_role(by).items()}
    out["all"] = round(sum(by.values()) / n * 1e6, 1)
    return out


def run_connect(broker, scenario, rnd, args):
    """``connect``: close each connection after its CONNACK, for --duration s;
    ``connect-keep``: keep every one of --keep connections open until the last."""
    prefix = "%s-%s-r%d" % (broker.name, scenario, rnd)
    extra = ["--duration", str(args.duration)]
    if scenario == "connect-keep":
        extra = ["--duration", "60", "--connects", str(args.keep), "--hold", "90",
                 "--max-open", str(args.keep + args.concurrency)]
    res = run_tool(storm_argv(broker.port, args, prefix, extra + [
        "--concurrency", str(args.concurrency), "--source-ips", str(args.source_ips),
        "--broker-pid", str(broker.pid)]), args.duration + 120)
    return {"connacks_per_s": res["connacks_per_s"], "p50_ms": res["latency_ms"]["p50"],
            "p99_ms": res["latency_ms"]["p99"], "gen_cores": res["gen_cores"],
            "cpu_us_per_connect": per_connect(res), "outcomes": res["outcomes"]}


def publishers(broker, prefix, args):
    return [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
            "--connections", str(args.publishers), "--qos", "1", "--window", "1",
            "--duration", str(args.duration), "--client-prefix", prefix,
            "--source-ips", str(args.publisher_ips), "--broker-pid", str(broker.pid)] + (
                ["--rate", str(args.publisher_rate)] if args.publisher_rate else [])


def run_isolation(broker, rnd, phase, args):
    """One publishers' run, alone (``phase`` "quiet") or beside the flood ("storm")."""
    prefix = "%s-%s-r%d" % (broker.name, phase, rnd)
    flood = None
    before = broker.read_metrics()
    offset = log_size(broker.log)
    if phase == "storm":
        flood = subprocess.Popen(storm_argv(broker.port, args, "flood-" + prefix, [
            "--duration", str(args.duration + 2 * args.flood_lead), "--source", FLOOD_SOURCE,
            "--concurrency", str(args.flood_concurrency), "--hold", str(args.flood_hold),
            "--max-open", str(args.flood_max_open)]), stdout=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
            preexec_fn=(lambda: os.nice(args.flood_nice)) if args.flood_nice else None)
        time.sleep(args.flood_lead)
    try:
        res = run_tool(publishers(broker, prefix, args), args.duration + 60)
    finally:
        flood_res = None
        if flood is not None:
            out, _ = flood.communicate(timeout=args.duration + 60)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            flood_res = json.loads(lines[-1]) if lines else None
    after = broker.read_metrics()
    rec = {"p50_ms": res["latency_ms"]["p50"], "p99_ms": res["latency_ms"]["p99"],
           "msgs_per_s": res["msgs_per_s"], "acked": res["acked"], "sent": res["sent"],
           "connected": res["connected"], "errors": res["errors"],
           "gen_cores": res["loadgen_cores"],
           # the broker's CPU (s) by process while the publishers ran (the flood's, too)
           "broker_cpu_by_process": res.get("broker_cpu_by_process")}
    if broker.db:
        d = check_run(broker.db, prefix, res, 1, 10.0)
        rec["durability"] = {k: d.get(k) for k in ("ok", "acked", "rows", "missing",
                                                   "duplicated", "foreign", "text")}
    if flood_res is not None:
        rec["flood"] = {k: flood_res.get(k) for k in ("attempts", "attempts_per_s", "connacks",
                                                      "refused", "outcomes", "gen_cores",
                                                      "open_peak")}
        rec["edge_refused"] = refused_by_limit(before, after)
        lines, held = log_refusals(read_from(broker.log, offset), FLOOD_SOURCE)
        rec["log_refusal_lines"] = lines
        rec["log_lines_held_back"] = held
    return rec


# -- brokers and the run --------------------------------------------------------------------

def limits_overrides(args):
    return {"limits": {"allowlist": [], "max_conn_per_ip": args.max_conn_per_ip,
                       "max_conn_rate_per_ip": args.max_conn_rate_per_ip,
                       "conn_rate_burst": args.conn_rate_burst}}


def make_brokers(tmp, args):
    """{scenario: [Broker]}: the isolation ones have the per-IP limits on loopback."""
    out = {}
    connect = [s for s in args.scenario if s.startswith("connect")]
    if connect:
        group = [make_mosquitto(tmp, args, tag="-connect"),
                 make_mqttd(tmp, args, "mqttd", "-connect")] + [
            make_mqttd(tmp, args, tree_name(n), "-connect", overrides=tree_overrides(n))
            for n in args.workers]
        for name in connect:  # the same brokers: their defaults either way
            out[name] = group
    if "isolation" in args.scenario:
        lim = limits_overrides(args)
        out["isolation"] = [make_mosquitto(tmp, args, tag="-isolation"),
                            make_mqttd(tmp, args, "mqttd", "-isolation", overrides=lim,
                                       metrics=True)] + [
            make_mqttd(tmp, args, tree_name(n), "-isolation", metrics=True,
                       overrides={**lim, **tree_overrides(n)}) for n in args.workers]
    return out


def progress(scenario, rnd, name, phase, rec):
    print("round %d %-9s %-10s %-5s %s" % (rnd, scenario, name, phase, json.dumps(rec)),
          file=sys.stderr, flush=True)


def run_all(brokers, args):
    records = []
    for rnd in range(args.rounds):
        for scenario, group in brokers.items():
            k = rnd % len(group)
            for b in group[k:] + group[:k]:
                phases = [scenario] if scenario != "isolation" else (
                    ["quiet", "storm"] if rnd % 2 == 0 else ["storm", "quiet"])
                for phase in phases:
                    try:
                        rec = (run_connect(b, scenario, rnd, args) if scenario != "isolation"
                               else run_isolation(b, rnd, phase, args))
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                        rec = {"error": str(e)}
                    rec.update(scenario=scenario, broker=b.name, round=rnd, phase=phase,
                               alive=b.alive())
                    records.append(rec)
                    progress(scenario, rnd, b.name, phase, {
                        k: v for k, v in rec.items()
                        if k not in ("scenario", "broker", "round", "phase")})
                    time.sleep(args.pause)
    return records


def grouped(records):
    """{(scenario, broker, phase): [run records]}."""
    out = {}
    for rec in records:
        out.setdefault((rec["scenario"], rec["broker"], rec["phase"]), []).append(rec)
    return out


def medians(recs):
    """(the runs that did not fail, their medians: rates, latency, generator cores, CPU
    per connect by process, durability summed)."""
    ok = [r for r in recs if "error" not in r]
    s = {"runs": len(recs), "failed": len(recs) - len(ok)}
    for field in ("connacks_per_s", "p50_ms", "p99_ms", "gen_cores", "msgs_per_s"):
        s[field] = med([r.get(field) for r in ok])
    cpus = [r["cpu_us_per_connect"] for r in ok if r.get("cpu_us_per_connect")]
    if cpus:
        s["cpu_us_per_connect"] = {k: med([c.get(k) for c in cpus])
                                   for k in sorted({k for c in cpus for k in c})}
    durs = [r["durability"] for r in ok if "durability" in r]
    if durs:
        s["durability"] = {"ok": sum(1 for d in durs if d["ok"]), "runs": len(durs),
                           **{k: sum(d.get(k) or 0 for d in durs)
                              for k in ("acked", "rows", "missing", "duplicated", "foreign")}}
    return ok, s


def summarize(records):
    """{(scenario, broker, phase): medians}."""
    summary = {}
    for key, recs in grouped(records).items():
        ok, s = medians(recs)
        floods = [r["flood"] for r in ok if r.get("flood")]
        if floods:
            s["flood_attempts_per_s"] = med([f["attempts_per_s"] for f in floods])
            s["flood_connacks"] = sum(f["connacks"] for f in floods)
            s["flood_refused"] = sum(f["refused"] for f in floods)
            s["flood_attempts"] = sum(f["attempts"] for f in floods)
            s["flood_gen_cores"] = med([f["gen_cores"] for f in floods])
            refused = {}
            for r in ok:
                for k, v in (r.get("edge_refused") or {}).items():
                    refused[k] = refused.get(k, 0) + v
            s["edge_refused"] = refused
            lines = {}
            for r in ok:
                for k, v in (r.get("log_refusal_lines") or {}).items():
                    lines[k] = lines.get(k, 0) + v
            s["log_refusal_lines"] = lines
            s["log_lines_held_back"] = sum(r.get("log_lines_held_back") or 0 for r in ok)
        summary[key] = s
    return summary


def verdicts(summary, args):
    """Rows (target, broker, measured, needed, verdict)."""
    rows = []
    for (scenario, broker, phase), s in sorted(summary.items()):
        if scenario.startswith("connect") and broker.startswith("mqttd-w"):
            rate = s["connacks_per_s"]
            bound = (s["gen_cores"] or 0) > GENERATOR_BOUND
            verdict = ("n/a" if rate is None else "PASS" if rate >= CONNECT_TARGET
                       else "UNPROVEN" if bound else "FAIL")
            rows.append(("connects/s through the master" + (
                ", kept" if scenario == "connect-keep" else ""), broker, fmt(rate),
                ">= 5,000", verdict))
        if scenario == "isolation" and phase == "storm" and broker.startswith("mqttd"):
            quiet = summary.get((scenario, broker, "quiet"), {})
            r = (s["p99_ms"] / quiet["p99_ms"]) if s["p99_ms"] and quiet.get("p99_ms") else None
            rows.append(("PUBACK p99 storm / quiet", broker, "%s / %s ms = %s" % (
                fmt(s["p99_ms"], "{:.2f}"), fmt(quiet.get("p99_ms"), "{:.2f}"),
                fmt(r, "{:.2f}x")), "<= 2x",
                "n/a" if r is None else "PASS" if r <= P99_TARGET else "FAIL"))
            lost = sum((x.get("durability") or {}).get(k, 0) for x in (s, quiet)
                       for k in ("missing", "duplicated", "foreign"))
            rows.append(("publishers lose nothing", broker, "%s missing/dup/foreign of %s acked"
                         % (lost, fmt(sum((x.get("durability") or {}).get("acked", 0)
                                          for x in (s, quiet)))), "0",
                         "PASS" if lost == 0 and s.get("durability") else "FAIL"))
            refused = s.get("edge_refused") or {}
            rows.append(("flood refused by its limits", broker, ", ".join(
                "%s %s" % (k, fmt(v)) for k, v in sorted(refused.items())) or "none", "> 0",
                "PASS" if sum(refused.values()) > 0 else "FAIL"))
    return rows


def print_report(summary, rows, args, out=sys.stdout):
    w = out.write
    for name, what in (("connect", "%g s, close after CONNACK" % args.duration),
                       ("connect-keep", "%d connections, every one kept open" % args.keep)):
        if name not in args.scenario:
            continue
        w("\nconnect storm (%s, %d in flight, %d source addresses)\n"
          % (what, args.concurrency, args.source_ips))
        w("  %-10s %10s %14s %9s  %s\n" % ("broker", "connects/s", "p50/p99 ms", "gen cores",
                                           "broker CPU us per connect, by process"))
        _connect_rows(w, summary, name)
    if "isolation" not in args.scenario:
        w("\ntargets (issue 12, medians of %d rounds)\n" % args.rounds)
        for r in rows:
            w("  %-32s %-10s %-44s %-9s %s\n" % r)
        return
    _isolation_rows(w, summary, rows, args)


def connect_row(w, broker, s, width=10):
    """One broker's line of a connect summary: rate, p50/p99, the generator's cores
    (flagged "!" when generator-bound) and CPU per connect by process."""
    w("  %-*s %10s %14s %7s%-2s  %s\n" % (
        width, broker, fmt(s["connacks_per_s"]),
        "%s/%s" % (fmt(s["p50_ms"], "{:.2f}"), fmt(s["p99_ms"], "{:.2f}")),
        fmt(s["gen_cores"], "{:.2f}"),
        " !" if (s["gen_cores"] or 0) > GENERATOR_BOUND else "",
        ", ".join("%s %s" % (k, fmt(v, "{:.1f}"))
                  for k, v in (s.get("cpu_us_per_connect") or {}).items())))


def _connect_rows(w, summary, name):
    for (scenario, broker, phase), s in summary.items():
        if scenario == name:
            connect_row(w, broker, s)


def _isolation_rows(w, summary, rows, args):
    w("\nstorm isolation (%d publishers QoS 1 window 1 at %s/s each from %d addresses, %g s; "
      "flood from %s, %d in flight, hold %g s, nice %d; mqttd: allowlist [], "
      "max_conn_per_ip %d, max_conn_rate_per_ip %g, burst %d)\n" % (
          args.publishers, fmt(args.publisher_rate or None, "{:g}"), args.publisher_ips,
          args.duration, FLOOD_SOURCE, args.flood_concurrency, args.flood_hold,
          args.flood_nice,
          args.max_conn_per_ip, args.max_conn_rate_per_ip, args.conn_rate_burst))
    w("  %-10s %-6s %9s %14s %5s  %s\n" % ("broker", "phase", "msgs/s", "p50/p99 ms", "gen",
                                           "flood: attempts/s, connacks/refused, by limit"))
    for (scenario, broker, phase), s in sorted(summary.items()):
        if scenario != "isolation":
            continue
        flood = ""
        if "flood_attempts" in s:
            flood = ("%s/s (gen %s cores), %s connacks / %s refused of %s; door: %s; "
                     "log lines: %s + %s held back") % (
                fmt(s["flood_attempts_per_s"]), fmt(s["flood_gen_cores"], "{:.2f}"),
                fmt(s["flood_connacks"]), fmt(s["flood_refused"]), fmt(s["flood_attempts"]),
                json.dumps(s["edge_refused"]), json.dumps(s["log_refusal_lines"]),
                fmt(s["log_lines_held_back"]))
        w("  %-10s %-6s %9s %14s %5s  %s\n" % (
            broker, phase, fmt(s["msgs_per_s"]), "%s/%s" % (fmt(s["p50_ms"], "{:.2f}"),
                                                           fmt(s["p99_ms"], "{:.2f}")),
            fmt(s["gen_cores"], "{:.2f}"), flood))
        d = s.get("durability")
        if d:
            w("  %-10s %-6s durability: %d/%d runs OK, %s acked, missing %d, duplicated %d, "
              "foreign %d\n" % (broker, phase, d["ok"], d["runs"], fmt(d["acked"]),
                                d["missing"], d["duplicated"], d["foreign"]))
    w("\ntargets (issue 12, medians of %d rounds)\n" % args.rounds)
    for r in rows:
        w("  %-32s %-10s %-44s %-9s %s\n" % r)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append",
                   choices=("connect", "connect-keep", "isolation"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--workers", type=int, action="append",
                   help="server.workers of the tree (repeatable; default 2)")
    p.add_argument("--concurrency", type=int, default=64, help="storm handshakes in flight")
    p.add_argument("--source-ips", type=int, default=20, help="connect storm's addresses")
    p.add_argument("--keep", type=int, default=10000,
                   help="connect-keep: connections opened and kept (default 10,000)")
    p.add_argument("--publishers", type=int, default=50)
    p.add_argument("--publisher-ips", type=int, default=10)
    p.add_argument("--publisher-rate", type=float, default=20.0,
                   help="publishes a second per publisher (0: as fast as PUBACKs come back)")
    p.add_argument("--flood-concurrency", type=int, default=128)
    p.add_argument("--flood-hold", type=float, default=0.5)
    p.add_argument("--flood-max-open", type=int, default=4000)
    p.add_argument("--flood-nice", type=int, default=0,
                   help="run the flood at this nice level (19: it gets only the CPU the "
                        "brokers leave, as a flood from another host would; default 0)")
    p.add_argument("--flood-lead", type=float, default=1.0,
                   help="seconds the flood runs before and after the publishers")
    p.add_argument("--max-conn-per-ip", type=int, default=100)
    p.add_argument("--max-conn-rate-per-ip", type=float, default=100.0)
    p.add_argument("--conn-rate-burst", type=int, default=200)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    a = p.parse_args(argv)
    a.scenario = a.scenario or ["connect", "connect-keep", "isolation"]
    a.workers = a.workers or [2]
    # what brokers.mqttd_config reads
    a.mqttd_max_inflight, a.mqttd_extra_toml, a.mqttd_set = 1000, None, None
    return a


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard, _ = common.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="mqttd-storms-")
    brokers = make_brokers(tmp, args)
    every = list({id(b): b for group in brokers.values() for b in group}.values())
    load = os.getloadavg()
    t0 = time.monotonic()
    with running(every):
        records = run_all(brokers, args)
    summary = summarize(records)
    rows = verdicts(summary, args)
    print(header(load, t0, soft, hard))
    print_report(summary, rows, args)
    return finish(records, summary, rows, args, tmp)


def finish(records, summary, rows, args, tmp):
    """After the report: the JSON file, the temp dir gone; the exit status (2: something
    acknowledged was lost)."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": {"|".join(k): v for k, v in summary.items()},
                       "targets": rows, "runs": records}, f, indent=1)
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    lost = [r for r in records if (r.get("durability") or {}).get("ok") is False]
    return 2 if lost else 0


def header(load, t0, soft, hard):
    """The run's first line: when, the load average at its start and end, the fd limit."""
    return ("%s; load average at start %.2f %.2f %.2f, at end %.2f %.2f %.2f; RLIMIT_NOFILE "
            "%d/%d; wall %.0f s" % (time.strftime("%Y-%m-%d %H:%M:%S"), *load, *os.getloadavg(),
                                    soft, hard, time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(main())
