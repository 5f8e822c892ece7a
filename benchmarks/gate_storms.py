#!/usr/bin/env python3
"""The gate (issue 13) under load, in one run: token connects beside mosquitto, and the
mixed storm.

One mqttd tree (``server.workers``, default 2, everything else its default, so
``auth.allow_anonymous = false``: only tokens get in) whose accounts and tokens are
made before it starts with the operator's own ``mqttd`` command (mqttd.manage.cli,
called in this process: one ``accounts add`` per account, one ``tokens add`` per token),
and Debian's mosquitto (brokers.py: anonymous on loopback, persistence false).

* ``connect``: connect_storm.py from 20 loopback addresses, 64 handshakes in flight,
  each closed with a DISCONNECT after its CONNACK, a fresh client id every attempt and
  the tokens in turn as usernames (``--accounts`` x ``--tokens-per-account``, default
  100 x 20 = 2,000 tokens: at 5,000 connects/s that is 2.5 attempts/s per token, under
  the default ``auth.rate_per_token`` 4/s with burst 4, which stays as it is unless
  ``--rate-per-token``); each account's ``max_connections`` is ``--quota`` (1,000).
  mosquitto takes the same storm anonymously (and with ``--with-anonymous`` the same
  tree with ``auth.allow_anonymous = true``, no usernames; with ``--with-baseline DIR``
  the anonymous tree of another checkout, e.g. main before the gate). Rounds A B A B (the order rotates),
  medians, the ratio to mosquitto, the generator's CPU (``!``: generator-bound) and the
  broker's CPU per connect by process.
* ``mixed``: 50 good clients (loadgen.py, QoS 1, window 1, paced at 20/s each, one
  token each, 127.0.0.1..10) publish alone ("calm") and again ("storm") beside a flood
  of CONNECTs with unknown tokens (``--bad-tokens`` of them in turn, 127.0.0.50) and
  flapping clients (``--flappers`` client ids with a token each, connect/DISCONNECT as
  fast as they go, 127.0.0.60); calm and storm alternate their order by round. Per
  run: PUBACK p50/p99, every acknowledged message checked against mqttd.db
  (durability.py), the gate's refusals by reason (``edge_gate_refused``, read from the
  processes through metrics_mqttd.py) and the storm clients' outcomes.

    .venv/bin/python benchmarks/gate_storms.py                       # both, 3 rounds
    .venv/bin/python benchmarks/gate_storms.py --scenario connect --rounds 4 --duration 5
"""
import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from brokers import make_mosquitto, make_mqttd, running, tree_overrides  # noqa: E402
from durability import check_run  # noqa: E402
from report import GENERATOR_BOUND, fmt, med  # noqa: E402
from storms import (connect_row, finish, grouped, header, medians, per_connect,  # noqa: E402
                    refused_by_limit, run_tool, storm_argv)

CONNECT_TARGET = 5000.0
P99_TARGET = 2.0
BAD_SOURCE, FLAP_SOURCE = "127.0.0.50", "127.0.0.60"
GATE = "mqttd-gate"
ANON = "mqttd-anon"
BASE = "mqttd-base"


# -- accounts and tokens, with the operator's command ----------------------------------------

def cli(data_dir, *argv):
    """``mqttd ARGV --data-dir DATA_DIR`` (mqttd.manage.cli.main in this process); stdout."""
    from mqttd.manage.cli import main
    out, err = io.StringIO(), io.StringIO()
    rc = main([*argv, "--data-dir", data_dir], stdout=out, stderr=err,
              environ=dict(os.environ, MQTTD_CONFIG=""))
    if rc != 0:
        raise RuntimeError("mqttd %s: %s" % (" ".join(argv), err.getvalue().strip()))
    return out.getvalue()


def provision(data_dir, tmp, args):
    """Accounts and tokens; {kind: path of a file with its tokens, one a line}."""
    t0 = time.monotonic()
    files = {}

    def account(name, n):
        cli(data_dir, "accounts", "add", name, "--max-connections", str(args.quota))
        return [cli(data_dir, "tokens", "add", name).strip().splitlines()[-1] for _ in range(n)]

    storm = []
    for a in range(args.accounts):
        storm += account("bench%03d" % a, args.tokens_per_account)
    kinds = {"connect": storm, "good": account("good", args.publishers),
             "flap": account("flappers", args.flappers),
             "bad": ["bad%029d" % i for i in range(args.bad_tokens)]}  # 32 chars, unknown
    for kind, tokens in kinds.items():
        files[kind] = os.path.join(tmp, "tokens-%s.txt" % kind)
        with open(files[kind], "w") as f:
            f.write("\n".join(tokens) + "\n")
    print("provisioned %d accounts, %d tokens with the mqttd command in %.1f s" % (
        args.accounts + 2, len(storm) + args.publishers + args.flappers,
        time.monotonic() - t0), file=sys.stderr, flush=True)
    return files


GATE_COUNTERS = ("edge_gate_lookups", "gate_token_lookups", "edge_gate_negative_hits",
                 "edge_flapping_bans{kind=clientid}", "edge_gate_kicked{reason=banned}")


def counter_deltas(before, after, names):
    """{name: growth between two read_metrics() dumps, summed over the processes}: how
    often the storm reached SQLite (token lookups), the negative cache, the bans."""
    if before is None or after is None:
        return None
    return {n: sum(series.get(n, 0) - before.get(proc, {}).get(n, 0)
                   for proc, series in after.items()) for n in names}


# -- runs -------------------------------------------------------------------------------------

def run_connect(broker, rnd, args, files):
    prefix = "%s-connect-r%d" % (broker.name, rnd)
    extra = ["--duration", str(args.duration), "--concurrency", str(args.concurrency),
             "--source-ips", str(args.source_ips), "--broker-pid", str(broker.pid)]
    if broker.name == GATE:
        extra += ["--username-file", files["connect"]]
    res = run_tool(storm_argv(broker.port, args, prefix, extra), args.duration + 120)
    return {"connacks_per_s": res["connacks_per_s"], "p50_ms": res["latency_ms"]["p50"],
            "p99_ms": res["latency_ms"]["p99"], "gen_cores": res["gen_cores"],
            "cpu_us_per_connect": per_connect(res), "outcomes": res["outcomes"]}


def storm_clients(broker, prefix, args, files):
    """The bad-token flood and the flappers, started; [(name, Popen)]."""
    run_s = str(args.duration + 2 * args.storm_lead)
    nice = (lambda: os.nice(args.storm_nice)) if args.storm_nice else None
    out = []
    for name, extra in (
            ("bad", ["--source", BAD_SOURCE, "--concurrency", str(args.bad_concurrency),
                     "--username-file", files["bad"]]),
            ("flap", ["--source", FLAP_SOURCE, "--concurrency", str(args.flappers),
                      "--client-ids", str(args.flappers), "--username-file", files["flap"]])):
        out.append((name, subprocess.Popen(
            storm_argv(broker.port, args, "%s-%s" % (name, prefix), ["--duration", run_s] + extra),
            stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, preexec_fn=nice)))
    return out


def run_mixed(broker, rnd, phase, args, files):
    prefix = "%s-%s-r%d" % (broker.name, phase, rnd)
    before = broker.read_metrics()
    storms = storm_clients(broker, prefix, args, files) if phase == "storm" else []
    if storms:
        time.sleep(args.storm_lead)
    try:
        res = run_tool([sys.executable, os.path.join(HERE, "loadgen.py"), "--port",
                        str(broker.port), "--connections", str(args.publishers), "--qos", "1",
                        "--window", "1", "--duration", str(args.duration), "--client-prefix",
                        prefix, "--source-ips", "10", "--broker-pid", str(broker.pid),
                        "--username-file", files["good"], "--rate", str(args.publisher_rate)],
                       args.duration + 60)
    finally:
        clients = {}
        for name, p in storms:
            out, _ = p.communicate(timeout=args.duration + 60)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if lines:
                r = json.loads(lines[-1])
                clients[name] = {k: r.get(k) for k in ("attempts", "attempts_per_s",
                                                       "outcomes", "gen_cores")}
    after = broker.read_metrics()
    d = check_run(broker.db, prefix, res, 1, 10.0)
    return {"p50_ms": res["latency_ms"]["p50"], "p99_ms": res["latency_ms"]["p99"],
            "msgs_per_s": res["msgs_per_s"], "acked": res["acked"], "sent": res["sent"],
            "connected": res["connected"], "errors": res["errors"],
            "gen_cores": res["loadgen_cores"], "storm_clients": clients,
            "gate_refused": refused_by_limit(before, after, "edge_gate_refused", "reason"),
            "gate_counters": counter_deltas(before, after, GATE_COUNTERS),
            "durability": {k: d.get(k) for k in ("ok", "acked", "rows", "missing",
                                                 "duplicated", "foreign", "text")}}


def run_all(connectors, gate, args, files):
    """``connectors``: the brokers of the connect storm (mosquitto, the gate, the
    anonymous tree), in an order that rotates every round (A B, B A)."""
    records = []
    for rnd in range(args.rounds):
        jobs = []
        if "connect" in args.scenario:
            k = rnd % len(connectors)
            jobs += [("connect", b, "connect") for b in connectors[k:] + connectors[:k]]
        if "mixed" in args.scenario:
            jobs += [("mixed", gate, ph) for ph in (
                ["calm", "storm"] if rnd % 2 == 0 else ["storm", "calm"])]
        for scenario, b, phase in jobs:
            try:
                rec = (run_connect(b, rnd, args, files) if scenario == "connect"
                       else run_mixed(b, rnd, phase, args, files))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                rec = {"error": str(e)}
            rec.update(scenario=scenario, broker=b.name, round=rnd, phase=phase,
                       alive=b.alive())
            records.append(rec)
            print("round %d %-8s %-11s %-7s %s" % (rnd, scenario, b.name, phase, json.dumps(
                {k: v for k, v in rec.items() if k not in ("scenario", "broker", "round",
                                                           "phase")})),
                  file=sys.stderr, flush=True)
            time.sleep(args.pause)
    return records


# -- summary ----------------------------------------------------------------------------------

def add_counts(dicts):
    out = {}
    for d in dicts:
        for k, v in (d or {}).items():
            out[k] = out.get(k, 0) + v
    return out


def summarize(records):
    """{(scenario, broker, phase): medians}, with outcomes, refusals and storm clients."""
    summary = {}
    for key, recs in grouped(records).items():
        ok, s = medians(recs)
        s["outcomes"] = add_counts(r.get("outcomes") for r in ok)
        if any("gate_refused" in r for r in ok):
            s["gate_refused"] = add_counts(r.get("gate_refused") for r in ok)
            s["gate_counters"] = add_counts(r.get("gate_counters") for r in ok)
        for name in ("bad", "flap"):
            runs = [r["storm_clients"][name] for r in ok if name in r.get("storm_clients", {})]
            if runs:
                s[name] = {"attempts_per_s": med([c["attempts_per_s"] for c in runs]),
                           "gen_cores": med([c["gen_cores"] for c in runs]),
                           "outcomes": add_counts(c["outcomes"] for c in runs)}
        summary[key] = s
    return summary


def verdicts(summary):
    rows = []
    gate = summary.get(("connect", GATE, "connect"))
    mosq = summary.get(("connect", "mosquitto", "connect"))
    if gate:
        rate = gate["connacks_per_s"]
        bound = (gate["gen_cores"] or 0) > GENERATOR_BOUND
        rows.append(("token connects/s through the gate", fmt(rate), ">= 5,000",
                     "n/a" if rate is None else "PASS" if rate >= CONNECT_TARGET
                     else "UNPROVEN" if bound else "FAIL"))
        if mosq and mosq["connacks_per_s"] and rate:
            rows.append(("  ratio to mosquitto (plain accept)", "%.2fx" % (
                rate / mosq["connacks_per_s"]), "(figure)", ""))
        for other, what in ((ANON, "the anonymous tree"), (BASE, "the tree before the gate")):
            o = summary.get(("connect", other, "connect"))
            if o and o["connacks_per_s"] and rate:
                rows.append(("  ratio to " + what, "%.2fx" % (rate / o["connacks_per_s"]),
                             "(figure)", ""))
    storm, calm = summary.get(("mixed", GATE, "storm")), summary.get(("mixed", GATE, "calm"))
    if storm and calm:
        r = storm["p99_ms"] / calm["p99_ms"] if storm["p99_ms"] and calm["p99_ms"] else None
        rows.append(("good clients' PUBACK p99 storm / calm", "%s / %s ms = %s" % (
            fmt(storm["p99_ms"], "{:.2f}"), fmt(calm["p99_ms"], "{:.2f}"),
            fmt(r, "{:.2f}x")), "<= 2x", "n/a" if r is None else
            "PASS" if r <= P99_TARGET else "FAIL"))
        ds = [x.get("durability") or {} for x in (storm, calm)]
        lost = sum(d.get(k, 0) for d in ds for k in ("missing", "duplicated", "foreign"))
        rows.append(("nothing acknowledged lost", "%d missing/dup/foreign of %s acked" % (
            lost, fmt(sum(d.get("acked", 0) for d in ds))), "0",
            "PASS" if lost == 0 and all(ds) else "FAIL"))
    return rows


def print_report(summary, rows, args, out=sys.stdout):
    w = out.write
    if "connect" in args.scenario:
        w("\nconnect storm (%g s, close after CONNACK, %d in flight, %d source addresses; "
          "mqttd-gate: %d tokens of %d accounts as usernames, rate_per_token %s)\n" % (
              args.duration, args.concurrency, args.source_ips,
              args.accounts * args.tokens_per_account, args.accounts,
              fmt(args.rate_per_token, "{:g}") if args.rate_per_token else "4 (default)"))
        w("  %-11s %10s %14s %9s  %s\n" % ("broker", "connects/s", "p50/p99 ms", "gen cores",
                                           "broker CPU us per connect, by process"))
        for b in ("mosquitto", BASE, ANON, GATE):
            s = summary.get(("connect", b, "connect"))
            if not s:
                continue
            connect_row(w, b, s, width=11)
            w("  %-11s outcomes: %s\n" % ("", json.dumps(s["outcomes"])))
    if "mixed" in args.scenario:
        w("\nmixed storm (%d good clients QoS 1 window 1 at %g/s each, %g s; storm: %d unknown "
          "tokens from %s, %d in flight; %d flapping client ids from %s; nice %d)\n" % (
              args.publishers, args.publisher_rate, args.duration, args.bad_tokens,
              BAD_SOURCE, args.bad_concurrency, args.flappers, FLAP_SOURCE, args.storm_nice))
        for phase in ("calm", "storm"):
            s = summary.get(("mixed", GATE, phase))
            if not s:
                continue
            d = s.get("durability") or {}
            w("  %-6s msgs/s %s, p50/p99 %s/%s ms, gen %s cores; durability %s/%s runs OK, "
              "%s acked, %s rows, missing %s, dup %s, foreign %s\n" % (
                  phase, fmt(s["msgs_per_s"]), fmt(s["p50_ms"], "{:.2f}"),
                  fmt(s["p99_ms"], "{:.2f}"), fmt(s["gen_cores"], "{:.2f}"), d.get("ok"),
                  d.get("runs"), fmt(d.get("acked")), fmt(d.get("rows")), d.get("missing"),
                  d.get("duplicated"), d.get("foreign")))
            for name in ("bad", "flap"):
                if name in s:
                    c = s[name]
                    w("  %-6s %s: %s attempts/s (gen %s cores): %s\n" % (
                        "", name, fmt(c["attempts_per_s"]), fmt(c["gen_cores"], "{:.2f}"),
                        json.dumps(c["outcomes"])))
            if "gate_refused" in s:
                w("  %-6s gate refused by reason (edge_gate_refused): %s\n" % (
                    "", json.dumps(s["gate_refused"])))
                w("  %-6s gate counters: %s\n" % ("", json.dumps(s["gate_counters"])))
    w("\ntargets (issue 13, medians of %d rounds)\n" % args.rounds)
    for r in rows:
        w("  %-40s %-44s %-9s %s\n" % r)


# -- brokers and the run ---------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=("connect", "mixed"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--tokens-per-account", type=int, default=20)
    p.add_argument("--quota", type=int, default=1000, help="max_connections of every account")
    p.add_argument("--rate-per-token", type=float, default=None,
                   help="auth.rate_per_token (and rate_burst, rounded up) for the whole run; "
                        "default: mqttd's 4/s, burst 4")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--source-ips", type=int, default=20)
    p.add_argument("--publishers", type=int, default=50)
    p.add_argument("--publisher-rate", type=float, default=20.0)
    p.add_argument("--bad-tokens", type=int, default=2000)
    p.add_argument("--bad-concurrency", type=int, default=64)
    p.add_argument("--flappers", type=int, default=5)
    p.add_argument("--storm-nice", type=int, default=0)
    p.add_argument("--storm-lead", type=float, default=1.0)
    p.add_argument("--pause", type=float, default=1.0)
    p.add_argument("--with-anonymous", action="store_true",
                   help="also the same tree with auth.allow_anonymous = true, storming "
                        "without usernames: what the token path costs, same run")
    p.add_argument("--with-baseline", metavar="CHECKOUT",
                   help="also the anonymous tree of another checkout (e.g. main before the "
                        "gate was wired: git worktree add --detach /tmp/base 43fdda5^)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    a = p.parse_args(argv)
    a.scenario = a.scenario or ["connect", "mixed"]
    a.mqttd_max_inflight, a.mqttd_extra_toml, a.mqttd_set = 1000, None, None
    return a


def gate_overrides(args):
    auth = {"allow_anonymous": False}
    if args.rate_per_token:
        auth.update(rate_per_token=args.rate_per_token,
                    rate_burst=max(1, int(args.rate_per_token + 0.999)))
    return {**tree_overrides(args.workers), "auth": auth}


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard, _ = common.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="mqttd-gate-")
    mosq = make_mosquitto(tmp, args, tag="-gate")
    gate = make_mqttd(tmp, args, GATE, overrides=gate_overrides(args), metrics=True)
    anon = [make_mqttd(tmp, args, ANON, overrides=tree_overrides(args.workers))] if (
        args.with_anonymous) else []
    if args.with_baseline:
        anon.append(make_mqttd(tmp, args, BASE, overrides=tree_overrides(args.workers),
                               source=args.with_baseline))
    files = provision(os.path.dirname(gate.db), tmp, args)
    every = [mosq, gate] + anon
    load = os.getloadavg()
    t0 = time.monotonic()
    with running(every):
        records = run_all([mosq] + anon + [gate], gate, args, files)
    summary = summarize(records)
    rows = verdicts(summary)
    print(header(load, t0, soft, hard))
    print_report(summary, rows, args)
    return finish(records, summary, rows, args, tmp)


if __name__ == "__main__":
    sys.exit(main())
