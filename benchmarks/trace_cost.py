#!/usr/bin/env python3
"""What the per-client trace and the metrics cost on the durable QoS 1 path (issue 14):
on against off in one run, beside mosquitto.

Four brokers, started once and run in rotating order every round (compare.py's
``run_one``: loadgen.py with ``--broker-pid``, so the CPU is summed over every process
of the tree; every acknowledged message checked against mqttd.db):

* ``mosquitto``: Debian's, persistence false, as in every benchmark here;
* ``mqttd-off``: the durable tree (``server.workers`` = ``--workers``, default 2), trace
  off (``manage.trace_file = ""``) and no metrics endpoint (``manage.http_listen = ""``;
  the children's one-second snapshots to the master cannot be turned off and run in
  every target);
* ``mqttd-on``: the same tree with the trace on (every connection's events written,
  counters per connection, no client traced publish by publish: the appliance's
  default with the Debian config) and ``/metrics`` scraped every second by this script;
* ``mqttd-traced``: ``mqttd-on`` with a rule tracing every client (``ip=127.0.0.0/8``):
  a publish and an ack event per message. What tracing everyone costs; not held to the
  target.

The target: ``mqttd-on`` costs at most 5 % more broker CPU per acknowledged message than
``mqttd-off`` (medians), at no lower rate beyond the same 5 %. Per line: msgs/s, PUBACK
p50/p99, the generator's cores (``!``: GENERATOR-BOUND, its busiest process above 0.9
of a core), the broker's cores and CPU per acknowledged message (us, all its processes).

    .venv/bin/python benchmarks/trace_cost.py                      # 2 scenarios x 3 rounds
    .venv/bin/python benchmarks/trace_cost.py --rounds 5 --scenario qos1-w10
"""
import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
from brokers import free_port, make_mosquitto, make_mqttd  # noqa: E402
from compare import progress, run_one  # noqa: E402
from report import GENERATOR_BOUND, fmt, med  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402

TARGET = 0.05
OFF, ON, TRACED, CONTROL = "mqttd-off", "mqttd-on", "mqttd-traced", "mqttd-off-b"
NAMES = ("mosquitto", OFF, ON, TRACED)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append",
                   choices=[n for n, s in SCENARIOS.items() if s.get("qos") == 1])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--workers", type=int, default=2, help="server.workers of the trees")
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--drain-timeout", type=float, default=15.0)
    p.add_argument("--per-ip", type=int, default=250)
    p.add_argument("--loadgen-procs", type=int, default=1)
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--with-control", action="store_true",
                   help=f"also run {CONTROL}, a second {OFF} (A/A): how far two identical "
                        f"trees differ in the same rounds, the noise any on/off gap is read "
                        f"against")
    args = p.parse_args(argv)
    args.names = NAMES + ((CONTROL,) if args.with_control else ())
    args.scenario = args.scenario or ["qos1-w10", "qos1-w100"]
    # What brokers.make_mqttd and compare.run_one read besides.
    args.mqttd_max_inflight, args.mqttd_extra_toml, args.mqttd_set = 1000, None, None
    args.core = args.nodisk = False
    args.qos0_settle = 10.0
    return args


class Scraper(threading.Thread):
    """GET /metrics every second while it runs (what a Prometheus server does)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop, self.scrapes, self.failures = url, threading.Event(), 0, 0

    def run(self):
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    answer.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1


def trace_everyone(broker):
    """``mqttd trace add ip=127.0.0.0/8`` on ``broker``'s data dir (the operator's CLI)."""
    from mqttd.manage.cli import main
    out, err = io.StringIO(), io.StringIO()
    status = main(["trace", "add", "ip=127.0.0.0/8", "--until-removed", "--data-dir",
                   os.path.join(broker.cwd, "data")], stdout=out, stderr=err,
                  environ={"MQTTD_CONFIG": ""})
    if status:
        raise SystemExit(f"mqttd trace add failed: {err.getvalue()}")


def build(tmp, args):
    tree = {"server": {"workers": args.workers}}
    off = {**tree, "manage": {"trace_file": "", "http_listen": ""}}
    brokers = {"mosquitto": make_mosquitto(tmp, args)}
    brokers[OFF] = make_mqttd(tmp, args, OFF, overrides=off)
    if args.with_control:
        brokers[CONTROL] = make_mqttd(tmp, args, CONTROL, overrides=off)
    for name in (ON, TRACED):
        port = free_port()
        on = {**tree, "manage": {"trace_file": "trace.jsonl", "trace_poll_interval": 0.2,
                                 "http_listen": f"tcp:{port}:interface=127.0.0.1"}}
        brokers[name] = make_mqttd(tmp, args, name, overrides=on)
        brokers[name].metrics_url = f"http://127.0.0.1:{port}/metrics"
    return brokers


def wait_ready(broker, timeout=30.0):
    """The tree's master listens before its workers are up: wait for all of them."""
    if broker.kind != "mqttd":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(broker.log, errors="replace") as f:
            if "mqttd tree ready" in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{broker.name}: the tree was not ready within {timeout:.0f} s")


def summarize(records, args):
    rows = {}
    for scenario in args.scenario:
        for name in args.names:
            rs = [r for r in records if (r["broker"], r["scenario"]) == (name, scenario)]
            ok = [r["result"] for r in rs if "result" in r]
            fig = [r.get("figures") or {} for r in rs]
            rows[scenario, name] = {
                "runs": len(rs),
                "msgs_per_s": med([r.get("msgs_per_s") for r in ok]),
                "p50_ms": med([(r.get("latency_ms") or {}).get("p50") for r in ok]),
                "p99_ms": med([(r.get("latency_ms") or {}).get("p99") for r in ok]),
                "gen_cores": med([f.get("gen_cores") for f in fig]),
                "gen_busiest": med([f.get("gen_busiest") for f in fig]),
                "generator_bound_runs": sum(1 for f in fig if f.get("generator_bound")),
                "broker_cores": med([f.get("broker_cores") for f in fig]),
                "cpu_us_per_msg": med([f.get("cpu_us_per_msg") for f in fig]),
                "cpu_by_role": {role: med([(f.get("cpu_us_by_role") or {}).get(role)
                                           for f in fig])
                                for role in ("master", "workers", "ingest")},
                "durability_ok": sum(1 for r in rs if (r.get("durability") or {}).get("ok")),
                "durability_runs": sum(1 for r in rs if "durability" in r),
            }
    return rows


def report(rows, args, extra):
    print("\n%-10s %-13s %9s %15s %7s %6s %8s %26s %s" % (
        "scenario", "broker", "msgs/s", "p50/p99 ms", "gen", "broker", "CPU us",
        "by process: master/wrk/ing", "durability"))
    for (scenario, name), s in rows.items():
        bound = " !" if (s["gen_busiest"] or 0) > GENERATOR_BOUND else "  "
        roles = s["cpu_by_role"]
        print("%-10s %-13s %9s %15s %5s%s %6s %8s %26s %s" % (
            scenario, name, fmt(s["msgs_per_s"]),
            "%s/%s" % (fmt(s["p50_ms"], "{:.2f}"), fmt(s["p99_ms"], "{:.2f}")),
            fmt(s["gen_cores"], "{:.2f}"), bound, fmt(s["broker_cores"], "{:.2f}"),
            fmt(s["cpu_us_per_msg"], "{:.1f}"),
            "/".join(fmt(roles.get(r), "{:.0f}") for r in ("master", "workers", "ingest"))
            if s["cpu_us_per_msg"] is not None and name != "mosquitto" else "",
            "" if not s["durability_runs"] else "%d/%d OK" % (s["durability_ok"],
                                                             s["durability_runs"])))
    print("\n(! = GENERATOR-BOUND: the load generator's busiest process above %.1f of a core;"
          " CPU us = broker CPU per acknowledged message, all its processes)" % GENERATOR_BOUND)
    verdicts = []
    for scenario in args.scenario:
        off, on, traced = (rows[scenario, n] for n in (OFF, ON, TRACED))
        if not (off["cpu_us_per_msg"] and on["cpu_us_per_msg"]):
            verdicts.append((scenario, "UNPROVEN", "no figures"))
            continue
        cpu = on["cpu_us_per_msg"] / off["cpu_us_per_msg"] - 1
        rate = on["msgs_per_s"] / off["msgs_per_s"] - 1
        all_cpu = traced["cpu_us_per_msg"] / off["cpu_us_per_msg"] - 1 \
            if traced["cpu_us_per_msg"] else None
        bound = off["generator_bound_runs"] or on["generator_bound_runs"]
        cpu_ok, rate_ok = cpu <= TARGET, rate >= -TARGET
        ok = cpu_ok and rate_ok
        verdict = ("UNPROVEN (generator-bound)" if bound and not ok
                   else "PASS" if ok else "FAIL")
        verdicts.append((scenario, verdict, cpu, rate, all_cpu))
        control = rows.get((scenario, CONTROL))
        if control and control["cpu_us_per_msg"]:
            print("%s: A/A, %s against %s: CPU per message %+.1f %%, msgs/s %+.1f %%" % (
                scenario, CONTROL, OFF, (control["cpu_us_per_msg"] / off["cpu_us_per_msg"] - 1)
                * 100, (control["msgs_per_s"] / off["msgs_per_s"] - 1) * 100))
        print("%s: trace + metrics on vs off: CPU per message %+.1f %% (%s), msgs/s %+.1f %% "
              "(%s; target: within %.0f %% each): %s; every client traced: CPU per message %s"
              % (scenario, cpu * 100, "ok" if cpu_ok else "over", rate * 100,
                 "ok" if rate_ok else "over", TARGET * 100, verdict,
                 "-" if all_cpu is None else "%+.1f %%" % (all_cpu * 100)))
    print("scrapes of /metrics: %s" % extra)
    return verdicts


def main(argv=None):
    args = parse_args(argv)
    common.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="mqttd-trace-cost-")
    brokers = build(tmp, args)
    records, scrapers = [], {}
    print("load average at the start: %s" % open("/proc/loadavg").read().strip(),
          file=sys.stderr)
    try:
        for b in brokers.values():
            b.start()
        for b in brokers.values():
            b.wait_port()
            wait_ready(b)
        trace_everyone(brokers[TRACED])
        time.sleep(1.0)  # the rule in force on every worker (trace_poll_interval 0.2 s)
        for name in (ON, TRACED):
            scrapers[name] = Scraper(brokers[name].metrics_url)
            scrapers[name].start()
        order = random.Random(14)
        for rnd in range(args.rounds):
            for scenario in args.scenario:
                # A new order every round (seeded): a rotation would keep each broker
                # after the same one, and a run pays for the disk writes its predecessor
                # left dirty (SQLite's fsync flushes the journal for everyone); each run
                # starts after a sync(2) besides.
                names = list(args.names)
                order.shuffle(names)
                for name in names:
                    os.sync()
                    rec = run_one(brokers[name], scenario, SCENARIOS[scenario], rnd, args)
                    records.append(rec)
                    progress(rec, SCENARIOS[scenario])
                    time.sleep(0.3)
        for name in (ON, TRACED):
            path = os.path.join(brokers[name].cwd, "trace.jsonl")
            size = os.path.getsize(path) if os.path.exists(path) else 0
            print("%s: trace file %.1f MB" % (name, size / 1e6), file=sys.stderr)
    finally:
        for scraper in scrapers.values():
            scraper.stop.set()
        for b in brokers.values():
            b.stop()
        print("load average at the end: %s" % open("/proc/loadavg").read().strip(),
              file=sys.stderr)
    rows = summarize(records, args)
    extra = ", ".join("%s %d (%d failed)" % (n, s.scrapes, s.failures)
                      for n, s in scrapers.items())
    verdicts = report(rows, args, extra)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": {f"{k[0]} {k[1]}": v for k, v in rows.items()},
                       "verdicts": verdicts, "runs": records}, f, indent=1, default=str)
    shutil.rmtree(tmp, ignore_errors=True)
    bad = [r for r in records if (r.get("durability") or {}).get("ok") is False]
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
