#!/usr/bin/env python3
"""Side-by-side benchmark: durable mqttd against Debian's mosquitto, in one run.

Starts the brokers on ephemeral loopback ports (generated configs in a temp dir,
RLIMIT_NOFILE raised to the hard limit): mosquitto as Debian installs it, with
persistence off (QoS 1 acked from memory) and anonymous access on loopback, and mqttd
with its defaults, i.e. DURABLE (PUBACK only after the SQLite COMMIT holding the
message, synchronous=FULL) as one process (``server.workers = 0``, brokers.ONE_PROCESS;
the appliance's own default, one worker per core, runs as ``--with-workers N``; the
header line names each broker's mode). Runs every selected scenario against
each broker in turn, --rounds times, the order rotating every round so machine noise
hits all; prints a table of medians and kills every broker at the end whatever happens.

After every mqttd run it opens DATA_DIR/mqttd.db read-only and matches that run's rows
to its messages (durability.py: every payload names its connection and sequence
number): every acknowledged message is a row, none is a row twice, no row is foreign;
a violation is printed loudly at once and the exit status is 2 (an acknowledgement that
is not in the database would make the throughput figure dishonest).

Beside every figure: the load generator's CPU (GENERATOR-BOUND when its busiest process
used more than 0.9 of a core) and each broker's CPU per acknowledged message, summed
over its whole process tree; then the durable path's targets, PASS/FAIL/UNPROVEN, on
the run's medians (targets.py).

The flush_interval sweep (--flush-intervals, default 0,1,5 ms) adds one more mqttd per
value, each with `[ingest] flush_interval` overridden, to the qos1-w10 scenario only (or
the --sweep-scenario ones), so the sweep shares that scenario's rounds and its mosquitto
figure.

    .venv/bin/python benchmarks/compare.py                 # everything, ~4.5 min
    .venv/bin/python benchmarks/compare.py --scenario qos1-w10 --rounds 1 --json out.json

Throughput and latency come from loadgen.py, memory per idle connection from
idle_rss.py, each run as a subprocess printing one JSON line.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import common  # noqa: E402
from brokers import (BASELINE, CEILING, FACTORIES, NODELAY, NOHTTP, SESSION5_MOSQUITTO,  # noqa: E402
                     make_mosquitto, make_mqttd, mqttd_config, parse_set, tree_name,
                     tree_overrides)
from durability import check_run  # noqa: E402
from report import print_table, run_figures, summarize  # noqa: E402
from targets import print_targets  # noqa: E402
from tree_targets import print_tree_targets  # noqa: E402
from scenarios import SCENARIOS, SWEEP_SCENARIO, fi_name, targets_for  # noqa: E402


# -- runs -----------------------------------------------------------------------------------

def run_json(argv, timeout):
    """Run a tool printing one JSON line; return (dict or None, error string)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "timed out after %.0f s" % timeout
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return None, "exit %s, stderr: %s" % (p.returncode, p.stderr.strip()[-500:])
    try:
        return json.loads(lines[-1]), (p.stderr.strip()[-500:] or None)
    except ValueError as e:
        return None, "bad JSON (%s): %s" % (e, lines[-1][:200])


def run_one(broker, name, sc, rnd, args):
    rec = {"broker": broker.name, "kind": broker.kind, "scenario": name, "round": rnd}
    if not broker.alive():
        rec["error"] = "broker not running (exit %s)" % broker.proc.returncode
        return rec
    c0 = common.tree_cpu_ticks(broker.pid)
    t0 = time.monotonic()
    prefix = "%s-%s-r%d" % (broker.name, name, rnd)
    if sc["kind"] == "load":
        argv = [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
                "--connections", str(sc["connections"]), "--qos", str(sc["qos"]),
                "--window", str(sc["window"]), "--duration", str(args.duration),
                "--payload-size", str(args.payload_size), "--client-prefix", prefix,
                "--drain-timeout", str(args.drain_timeout), "--broker-pid", str(broker.pid),
                "--procs", str(args.loadgen_procs),
                "--source-ips", str(common.auto_source_ips(sc["connections"], args.per_ip))]
        res, err = run_json(argv, args.duration + args.drain_timeout + 90)
    else:
        argv = [sys.executable, os.path.join(HERE, "idle_rss.py"), "--port", str(broker.port),
                "--pid", str(broker.pid), "--tree", "--connections", str(args.idle_connections),
                "--client-prefix", prefix, "--settle", str(args.idle_settle),
                "--after-close-wait", "0"]
        res, err = run_json(argv, 240)
    wall = time.monotonic() - t0
    c1 = common.tree_cpu_ticks(broker.pid)
    rec["wall_s"] = round(wall, 2)
    if c0 is not None and c1 is not None:
        rec["broker_cpu_util"] = round((c1 - c0) / common.CLK_TCK / wall, 3)
    if res is not None:
        rec["result"] = res
        if sc["kind"] == "load":
            rec["figures"] = run_figures(res, sc["qos"])
        if broker.db and sc["kind"] == "load":
            rec["durability"] = check_run(broker.db, prefix, res, sc["qos"], args.qos0_settle)
        res["clients"] = len(res.get("clients") or ())  # the per-client list was for the check
    if err:
        rec["stderr" if res is not None else "error"] = err
    if not broker.alive():
        rec["broker_died"] = "exit %s" % broker.proc.returncode
        broker.dead = rec["broker_died"]
    return rec


def meta(args):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    mosq = cmd([args.mosquitto, "-h"]).splitlines()
    commit = cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "uncommitted"
    dirty = bool(cmd(["git", "-C", REPO, "status", "--porcelain", "--", "mqttd"]))
    try:
        import twisted
        tw = twisted.__version__
    except ImportError:
        tw = None
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": commit + ("+dirty(mqttd/)" if dirty else ""),
            "mosquitto": mosq[0] if mosq else None, "twisted": tw,
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(), "kernel": platform.release(),
            "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "duration_s": args.duration, "rounds": args.rounds,
            "payload_size": args.payload_size, "idle_connections": args.idle_connections,
            "mqttd_config": mqttd_config(args),
            "flush_intervals_ms": args.flush_intervals}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS) + ["all"],
                   help="repeatable; default all (%s)" % ", ".join(SCENARIOS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per throughput run")
    p.add_argument("--drain-timeout", type=float, default=15.0)
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--per-ip", type=int, default=250,
                   help="connections per loopback source address (127.0.0.1..N)")
    p.add_argument("--idle-connections", type=int, default=10000)
    p.add_argument("--idle-settle", type=float, default=2.0)
    p.add_argument("--qos0-settle", type=float, default=10.0,
                   help="after a QoS 0 mqttd run, wait up to this long for its backlog to commit")
    p.add_argument("--flush-intervals", default="0,1,5",
                   help="[ingest] flush_interval values (ms): one extra mqttd each, run in the "
                        "sweep scenarios; '' for none (default 0,1,5)")
    p.add_argument("--sweep-scenario", action="append", choices=sorted(SCENARIOS),
                   help="repeatable; where the flush_interval variants run (default %s)"
                        % SWEEP_SCENARIO)
    p.add_argument("--json", metavar="FILE", help="write all runs and the summary here")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    p.add_argument("--core", action="store_true",
                   help="run mqttd's broker core with the in-memory store (benchmarks/core_broker.py)"
                        " instead of the durable twistd mqttd: measures the MQTT broker alone")
    p.add_argument("--nodisk", action="store_true",
                   help="run twistd mqttd with its SQLite write taken out (benchmarks/nodisk_mqttd.py):"
                        " the ceiling of the durable path; not durable")
    p.add_argument("--with-nohttp", action="store_true",
                   help="also run %s (durable, the webhook's HTTP request taken out: "
                        "benchmarks/nohttp_mqttd.py) in every load scenario, in the same rounds: "
                        "what the HTTP hop costs" % NOHTTP)
    p.add_argument("--with-ceiling", action="store_true",
                   help="also run %s (the --nodisk appliance) in every load scenario, in the "
                        "same rounds, and print durable mqttd's share of it" % CEILING)
    p.add_argument("--with-mosquitto-nodelay", action="store_true",
                   help="also run %s, mosquitto as compare.py ran it until session 5 "
                        "(set_tcp_nodelay true, which is not its default), in every load "
                        "scenario: the before of the A/B" % NODELAY)
    p.add_argument("--with-baseline", metavar="CHECKOUT",
                   help="also run %s, the durable mqttd of another checkout (its mqttd package "
                        "first on PYTHONPATH; e.g. git worktree add /tmp/base HEAD~1), in every "
                        "load scenario, in the same rounds: the A/B of a hot-path change"
                        % BASELINE)
    p.add_argument("--with-workers", metavar="N", type=int, action="append",
                   help="repeatable: also run mqttd-wN, the durable mqttd as a process tree "
                        "([server] workers = N: master, N workers, ingest child), in every "
                        "scenario, idle too, in the same rounds; its CPU and RSS are summed "
                        "over all its processes and split by process")
    p.add_argument("--loadgen-procs", type=int, default=1,
                   help="loadgen.py --procs: load processes per run (default 1; on 2 cores, "
                        "2 measured slower)")
    p.add_argument("--mqttd-max-inflight", type=int, default=1000,
                   help="[broker] max_inflight for mqttd (default 1000: covers window 100)")
    p.add_argument("--mqttd-extra-toml", metavar="FILE",
                   help="merged into the generated mqttd config (tables merge, keys replace)")
    p.add_argument("--mqttd-set", metavar="SECTION.KEY=VALUE", action="append", type=parse_set,
                   help="repeatable, e.g. --mqttd-set ingest.synchronous=NORMAL (applied after "
                        "--mqttd-extra-toml, to every mqttd)")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs, logs and databases")
    a = p.parse_args(argv)
    if a.core and a.nodisk:
        p.error("--core and --nodisk are two different stand-ins for mqttd; pick one")
    if (a.with_ceiling or a.with_nohttp or a.with_baseline or a.with_workers) and (a.core or a.nodisk):
        p.error("--with-ceiling and --with-nohttp run beside the durable mqttd; "
                "not with --core or --nodisk")
    if not a.scenario or "all" in a.scenario:
        a.scenario = list(SCENARIOS)
    a.scenario = [s for s in SCENARIOS if s in a.scenario]
    try:
        a.flush_intervals = [float(x) for x in a.flush_intervals.split(",") if x.strip()]
    except ValueError:
        p.error("--flush-intervals: comma-separated numbers (ms)")
    if a.sweep_scenario is None:
        a.sweep_scenario = [SWEEP_SCENARIO]
    a.sweep_scenario = [s for s in a.scenario if s in a.sweep_scenario
                        and SCENARIOS[s]["kind"] == "load"]
    if not a.sweep_scenario:
        a.flush_intervals = []
    return a


def progress(rec, sc):
    r = rec.get("result", {})
    if rec.get("error"):
        text = rec["error"]
    elif sc["kind"] == "load":
        lat = r.get("latency_ms") or r.get("ping_rtt_ms") or {}
        f = rec.get("figures", {})
        text = "%s msgs/s p50 %s p99 %s errors %s | gen %s cores%s | broker %s cores, %s us/msg" % (
            r.get("msgs_per_s"), lat.get("p50"), lat.get("p99"), r.get("errors"),
            f.get("gen_cores"), " GENERATOR-BOUND" if f.get("generator_bound") else "",
            f.get("broker_cores"), f.get("cpu_us_per_msg"))
        d = rec.get("durability")
        if d:
            text += " | " + d["text"]
    else:
        text = "%s B/conn open %s/%s errors %s cpu %s" % (
            r.get("bytes_per_connection"), r.get("still_open"), r.get("requested"),
            r.get("connect_errors"), rec.get("broker_cpu_util"))
    print("round %d %-14s %-11s %s" % (rec["round"], rec["scenario"], rec["broker"], text),
          file=sys.stderr, flush=True)
    d = rec.get("durability")
    if d and not d["ok"]:
        bar = "!" * 78
        print("%s\n%s %s round %d: %s\n%s" % (bar, rec["broker"], rec["scenario"], rec["round"],
                                            d["text"], bar), file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    soft, hard, _ = common.raise_nofile()
    need = max([args.idle_connections if "idle" in args.scenario else 0]
               + [SCENARIOS[s].get("connections", 0) for s in args.scenario]) + 200
    print("RLIMIT_NOFILE soft %d hard %d (need ~%d)" % (soft, hard, need), file=sys.stderr)
    if soft < need:
        print("warning: RLIMIT_NOFILE %d < %d: the largest scenarios will open fewer "
              "connections" % (soft, need), file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="mqttd-compare-")
    brokers = {"mosquitto": make_mosquitto(tmp, args), "mqttd": make_mqttd(tmp, args)}
    for ms in args.flush_intervals:
        name = fi_name(ms)
        brokers[name] = make_mqttd(tmp, args, name, overrides={"ingest": {"flush_interval": ms}})
    if args.with_ceiling:
        brokers[CEILING] = make_mqttd(tmp, args, CEILING, nodisk=True)
    if args.with_nohttp:
        brokers[NOHTTP] = make_mqttd(tmp, args, NOHTTP, nohttp=True)
    if args.with_baseline:
        brokers[BASELINE] = make_mqttd(tmp, args, BASELINE, source=args.with_baseline)
    for n in args.with_workers or ():
        brokers[tree_name(n)] = make_mqttd(tmp, args, tree_name(n), overrides=tree_overrides(n))
    if args.with_mosquitto_nodelay:
        brokers[NODELAY] = make_mosquitto(tmp, args, NODELAY, overrides=SESSION5_MOSQUITTO)
    records = []
    info = meta(args)
    t_start = time.monotonic()
    try:
        for b in brokers.values():
            b.start()
        for b in brokers.values():
            try:
                b.wait_port()
            except RuntimeError as e:
                b.dead = str(e)
                print("%s: %s\n--- log tail ---\n%s" % (b.name, e, b.output_tail()), file=sys.stderr)
        print("; ".join("%s (%s) pid %d port %d" % (b.name, b.mode(), b.pid, b.port)
                        for b in brokers.values()) + "; tmp " + tmp, file=sys.stderr)
        for rnd in range(args.rounds):
            for name in args.scenario:
                sc = SCENARIOS[name]
                names = targets_for(name, args)
                k = rnd % len(names)  # rotate the order every round
                for tname in names[k:] + names[:k]:
                    b = brokers[tname]
                    if b.dead:
                        records.append({"broker": b.name, "kind": b.kind, "scenario": name,
                                        "round": rnd, "error": "broker unusable: " + b.dead})
                        continue
                    if sc["kind"] == "idle":
                        # A fresh broker each time: after the first wave of connections
                        # closes, both allocators reuse the freed memory and a second
                        # wave on the same process shows (close to) 0 B per connection.
                        fresh = FACTORIES[b.kind](tmp, args, b.name, "-idle-r%d" % rnd,
                                                  overrides=b.overrides)
                        fresh.start()
                        try:
                            fresh.wait_port()
                            time.sleep(0.5)
                            # a tree's master listens before its children have booted:
                            # their start-up must not count as memory per connection
                            common.wait_rss_steady(fresh.pid)
                            rec = run_one(fresh, name, sc, rnd, args)
                        except RuntimeError as e:
                            rec = {"broker": b.name, "kind": b.kind, "scenario": name,
                                   "round": rnd, "error": str(e) + "\n" + fresh.output_tail()}
                        finally:
                            fresh.stop()
                    else:
                        rec = run_one(b, name, sc, rnd, args)
                    records.append(rec)
                    progress(rec, sc)
                    if rec.get("broker_died"):
                        print("%s died (%s); log tail:\n%s" % (b.name, rec["broker_died"], b.output_tail()),
                              file=sys.stderr)
                    time.sleep(0.3)
    finally:
        for b in brokers.values():
            b.stop()
    info["wall_s"] = round(time.monotonic() - t_start, 1)
    summary = summarize(records, args)
    print("%s; commit %s; %s; SQLite %s; RLIMIT_NOFILE %d/%d; %d rounds x %g s; wall %.0f s" % (
        info["date"], info["commit"], info["mosquitto"], info["sqlite"], soft, hard,
        args.rounds, args.duration, info["wall_s"]))
    print("mqttd config (besides defaults): %s" % json.dumps(info["mqttd_config"]))
    print_table(summary, args)
    target_rows = print_targets(summary) + print_tree_targets(summary, args)
    for b in brokers.values():
        if b.dead:
            print("\n%s was unusable: %s\n--- log tail ---\n%s" % (b.name, b.dead, b.output_tail()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": info, "summary": summary, "targets": target_rows, "runs": records}, f, indent=1)
    if args.keep_tmp:
        print("broker configs, logs and databases kept in " + tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [r for r in records if (r.get("durability") or {}).get("ok") is False]
    for r in bad:
        print("DURABILITY VIOLATED: %s %s round %d: %s" % (
            r["broker"], r["scenario"], r["round"], r["durability"]["text"]))
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
