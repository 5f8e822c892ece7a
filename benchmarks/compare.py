#!/usr/bin/env python3
"""Side-by-side benchmark: durable mqttd against Debian's mosquitto, in one run.

Starts the brokers on ephemeral loopback ports (generated configs in a temp dir,
RLIMIT_NOFILE raised to the hard limit): mosquitto with persistence off (QoS 1 acked
from memory) and mqttd with its defaults, i.e. DURABLE (PUBACK only after the SQLite
COMMIT holding the message, synchronous=FULL). Runs every selected scenario against
each broker in turn, --rounds times, the order rotating every round so machine noise
hits all; prints a table of medians and kills every broker at the end whatever happens.

After every mqttd run it opens DATA_DIR/mqttd.db read-only and counts the rows of that
run's clients: rows >= PUBACKs received, or the run is flagged (an acknowledgement that
is not in the database would make the throughput figure dishonest).

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
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import common  # noqa: E402

SCENARIOS = {
    "qos1-w10": {"kind": "load", "qos": 1, "connections": 10, "window": 10,
                 "desc": "QoS 1, 10 connections, window 10"},
    "qos1-w100": {"kind": "load", "qos": 1, "connections": 10, "window": 100,
                  "desc": "QoS 1, 10 connections, window 100"},
    "qos1-w10-c1k": {"kind": "load", "qos": 1, "connections": 1000, "window": 10,
                     "desc": "QoS 1, 1,000 connections, window 10"},
    "qos1-w100-c1k": {"kind": "load", "qos": 1, "connections": 1000, "window": 100,
                      "desc": "QoS 1, 1,000 connections, window 100"},
    "qos0": {"kind": "load", "qos": 0, "connections": 10, "window": 1,
             "desc": "QoS 0, 10 connections"},
    "idle": {"kind": "idle", "desc": "idle connections, RSS per connection (fresh broker each)"},
}
SWEEP_SCENARIO = "qos1-w10"  # default --sweep-scenario: where the flush_interval variants run
# Targets set by the brief for this machine (checked and printed, never enforced).
TARGET_RATIO = 0.5  # durable mqttd msgs/s >= 0.5 x mosquitto's in-memory QoS 1
TARGET_P99_MS = 10.0  # PUBACK p99 at window 10


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _raise_nofile():
    """preexec_fn for the brokers: soft RLIMIT_NOFILE up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def cpu_ticks(pid):
    """utime+stime (clock ticks) of pid and its descendants; None if gone."""
    total = 0
    for p in common.descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            if p == pid:
                return None
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


# -- TOML for the generated mqttd config --------------------------------------------------

def merge(base, extra):
    """Deep-merge dict ``extra`` into a copy of ``base`` (tables merge, values replace)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError("cannot write %r as TOML" % (v,))


def dump_toml(doc):
    """Enough TOML for mqttd's config: [section] tables of scalars/arrays, [[arrays]] of tables."""
    lines = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise TypeError("top-level key %r must be a table" % section)
        lines.append("[%s]" % section)
        nested = []
        for k, v in table.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                nested.append((k, v))
            else:
                lines.append("%s = %s" % (k, _toml_value(v)))
        for k, items in nested:
            for item in items:
                lines.append("[[%s.%s]]" % (section, k))
                lines.extend("%s = %s" % (kk, _toml_value(vv)) for kk, vv in item.items())
        lines.append("")
    return "\n".join(lines)


def parse_set(item):
    """--mqttd-set section.key=VALUE (VALUE in TOML syntax; bare words are strings)."""
    path, sep, raw = item.partition("=")
    if not sep or "." not in path:
        raise argparse.ArgumentTypeError("expected section.key=VALUE, got %r" % item)
    try:
        value = tomllib.loads("v = " + raw)["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    section, key = path.strip().split(".", 1)
    return {section: {key: value}}


# -- brokers ----------------------------------------------------------------------------

class Broker:
    def __init__(self, name, kind, argv, port, log, cwd, db=None, overrides=None):
        self.name = name  # target name: "mosquitto", "mqttd", "mqttd-fi0", ...
        self.kind = kind  # "mosquitto" or "mqttd"
        self.argv = argv
        self.port = port
        self.log = log
        self.cwd = cwd
        self.db = db  # mqttd.db path (mqttd only)
        self.overrides = overrides or {}
        self.proc = None
        self.dead = None  # why it is unusable, once it is

    def start(self):
        out = open(os.path.join(self.cwd, "broker.stdout"), "wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile, start_new_session=True)
        out.close()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("%s exited with %s before listening" % (self.name, self.proc.returncode))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("%s did not listen on port %d within %.0f s" % (self.name, self.port, timeout))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)  # our own session: the broker and its children
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def output_tail(self):
        return tail(self.log) + tail(os.path.join(self.cwd, "broker.stdout"), 10)


def make_mosquitto(tmp, args, name="mosquitto", tag="", overrides=None):
    d = os.path.join(tmp, name + tag)
    os.makedirs(d)
    port = free_port()
    log = os.path.join(d, "mosquitto.log")
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "listener %d 127.0.0.1" % port,
            "max_connections -1",
            "allow_anonymous true",
            "persistence false",
            # outgoing-side limits (no subscribers here, but make sure nothing throttles)
            "max_inflight_messages 0",
            "max_queued_messages 0",
            "set_tcp_nodelay true",
            "connection_messages false",
            "log_dest file " + log,
            "log_type error",
            "log_type warning",
            "log_type notice",
            # as root mosquitto would switch to user 'mosquitto', unable to write the log
            "user %s" % ("root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")),
            "",
        ]))
    return Broker(name, "mosquitto", [args.mosquitto, "-c", conf], port, log, d)


def mqttd_config(args, overrides=None):
    """The generated mqttd config: harness base, then --mqttd-extra-toml, --mqttd-set, variant."""
    doc = {"auth": {"allow_anonymous": True},
           "broker": {"max_inflight": args.mqttd_max_inflight}}
    if args.mqttd_extra_toml:
        with open(args.mqttd_extra_toml, "rb") as f:
            doc = merge(doc, tomllib.load(f))
    for item in args.mqttd_set or ():
        doc = merge(doc, item)
    if overrides:
        doc = merge(doc, overrides)
    return doc


def make_mqttd(tmp, args, name="mqttd", tag="", overrides=None, nodisk=None, nohttp=False):
    d = os.path.join(tmp, name + tag)
    data = os.path.join(d, "data")
    os.makedirs(data)
    port = free_port()
    log = os.path.join(d, "mqttd.log")
    cfg = os.path.join(d, "mqttd.toml")
    with open(cfg, "w") as f:
        f.write(dump_toml(mqttd_config(args, overrides)))
    if getattr(args, "core", False):
        # The broker core alone, in-memory store: no durability check possible.
        argv = [sys.executable, os.path.join(HERE, "core_broker.py"), "--port", str(port),
                "--config", cfg]
        return Broker(name, "mqttd-core", argv, port, log, d, overrides=overrides)
    argv = [args.twistd, "-n", "--pidfile", os.path.join(d, "twistd.pid"),
            "--logfile", log, "mqttd", "--config", cfg,
            "--listen", "tcp:%d:interface=127.0.0.1" % port, "--data-dir", data]
    if nodisk if nodisk is not None else getattr(args, "nodisk", False):
        # The whole appliance with the SQLite write taken out: no durability check.
        argv = [sys.executable, os.path.join(HERE, "nodisk_mqttd.py")] + argv[1:]
        return Broker(name, "mqttd-nodisk", argv, port, log, d, overrides=overrides)
    if nohttp:
        # Durable (real commit before PUBACK), the webhook's HTTP request taken out.
        argv = [sys.executable, os.path.join(HERE, "nohttp_mqttd.py")] + argv[1:]
        return Broker(name, "mqttd-nohttp", argv, port, log, d,
                      db=os.path.join(data, "mqttd.db"), overrides=overrides)
    return Broker(name, "mqttd", argv, port, log, d, db=os.path.join(data, "mqttd.db"),
                  overrides=overrides)


FACTORIES = {"mosquitto": make_mosquitto, "mqttd": make_mqttd, "mqttd-core": make_mqttd,
             "mqttd-nodisk": make_mqttd, "mqttd-nohttp": make_mqttd}


CEILING = "mqttd-nodisk"
"""--with-ceiling's target: the appliance without its SQLite write, run beside the others."""
NOHTTP = "mqttd-nohttp"
"""--with-nohttp's target: the durable appliance without the webhook's HTTP request."""


def fi_name(ms):
    return "mqttd-fi%s" % ("%g" % ms).replace(".", "p")


def targets_for(scenario, args):
    """Target names run in ``scenario`` (the sweep variants only in the sweep scenarios)."""
    names = ["mosquitto", "mqttd"]
    if scenario in args.sweep_scenario:
        names += [fi_name(ms) for ms in args.flush_intervals]
    if SCENARIOS[scenario]["kind"] == "load":
        names += [n for n, on in ((CEILING, args.with_ceiling), (NOHTTP, args.with_nohttp)) if on]
    return names


# -- durability check -----------------------------------------------------------------------

def count_rows(db_path, prefix, timeout=10.0):
    """Rows of clients '<prefix>-*' in mqttd.db, read-only (WAL readers never block the writer)."""
    conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=timeout)
    try:
        # GLOB is case-sensitive, so it can use the (client_id, received_at) index
        return conn.execute("SELECT count(*) FROM messages WHERE client_id GLOB ?",
                            (prefix + "-*",)).fetchone()[0]
    finally:
        conn.close()


def durability(broker, prefix, res, sc, settle):
    """rows vs acknowledged for one mqttd run; for QoS 0 (nothing acked) rows vs written,
    after waiting up to ``settle`` s for the backlog to commit (so the next run starts clean)."""
    out = {}
    try:
        rows = count_rows(broker.db, prefix)
        if sc["qos"] == 0:
            deadline = time.monotonic() + settle
            while rows < res.get("sent", 0) and time.monotonic() < deadline:
                time.sleep(0.25)
                rows = count_rows(broker.db, prefix)
    except sqlite3.Error as e:
        return {"error": "sqlite: %s" % e}
    out["rows"] = rows
    if sc["qos"]:
        out["acked"] = res.get("acked")
        out["ok"] = res.get("acked") is not None and rows >= res["acked"]
    else:
        out["written"] = res.get("sent")
        out["ok"] = None  # QoS 0 promises nothing; shown for information
    return out


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
    c0 = cpu_ticks(broker.pid)
    t0 = time.monotonic()
    prefix = "%s-%s-r%d" % (broker.name, name, rnd)
    if sc["kind"] == "load":
        argv = [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
                "--connections", str(sc["connections"]), "--qos", str(sc["qos"]),
                "--window", str(sc["window"]), "--duration", str(args.duration),
                "--payload-size", str(args.payload_size), "--client-prefix", prefix,
                "--drain-timeout", str(args.drain_timeout),
                "--source-ips", str(common.auto_source_ips(sc["connections"], args.per_ip))]
        res, err = run_json(argv, args.duration + args.drain_timeout + 90)
    else:
        argv = [sys.executable, os.path.join(HERE, "idle_rss.py"), "--port", str(broker.port),
                "--pid", str(broker.pid), "--tree", "--connections", str(args.idle_connections),
                "--client-prefix", prefix, "--settle", str(args.idle_settle),
                "--after-close-wait", "0"]
        res, err = run_json(argv, 240)
    wall = time.monotonic() - t0
    c1 = cpu_ticks(broker.pid)
    rec["wall_s"] = round(wall, 2)
    if c0 is not None and c1 is not None:
        rec["broker_cpu_util"] = round((c1 - c0) / os.sysconf("SC_CLK_TCK") / wall, 3)
    if res is not None:
        rec["result"] = res
        if broker.kind in ("mqttd", NOHTTP) and sc["kind"] == "load":
            rec["durability"] = durability(broker, prefix, res, sc, args.qos0_settle)
    if err:
        rec["stderr" if res is not None else "error"] = err
    if not broker.alive():
        rec["broker_died"] = "exit %s" % broker.proc.returncode
        broker.dead = rec["broker_died"]
    return rec


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


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
                    s["durability"] = {
                        "runs": len(dur),
                        "ok": sum(1 for d in dur if d.get("ok")),
                        "failed": sum(1 for d in dur if d.get("ok") is False or "error" in d),
                        "rows": sum(d.get("rows", 0) for d in dur),
                        "acked": sum(d.get("acked") or 0 for d in dur),
                        "written": sum(d.get("written") or 0 for d in dur),
                    }
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

    # durability
    lines = []
    for name, row in summary.items():
        for b, s in row["targets"].items():
            d = s.get("durability")
            if not d:
                continue
            if SCENARIOS[name]["qos"]:
                verdict = "OK" if d["failed"] == 0 and d["ok"] == d["runs"] else "FAILED"
                lines.append("  %-14s %-11s rows %11s >= PUBACKs %11s  %d/%d runs %s" % (
                    name, b, fmt(d["rows"]), fmt(d["acked"]), d["ok"], d["runs"], verdict))
            else:
                lines.append("  %-14s %-11s rows %11s of %11s written (QoS 0: no promise, "
                             "counted after <= %g s settle)" % (
                                 name, b, fmt(d["rows"]), fmt(d["written"]), args.qos0_settle))
    if lines:
        w("\ndurability: rows in mqttd.db (sqlite3 read-only, this run's client ids) vs PUBACKs "
          "the load generator received, summed over rounds\n" + "\n".join(lines) + "\n")

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
    if (a.with_ceiling or a.with_nohttp) and (a.core or a.nodisk):
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
        text = "%s msgs/s p50 %s p99 %s errors %s cpu %s" % (
            r.get("msgs_per_s"), lat.get("p50"), lat.get("p99"), r.get("errors"),
            rec.get("broker_cpu_util"))
        d = rec.get("durability")
        if d and "error" in d:
            text += " | durability check failed: %s" % d["error"]
        elif d and d.get("ok") is not None:
            text += " | rows %d %s PUBACKs %d %s" % (
                d["rows"], ">=" if d["ok"] else "<", d["acked"], "ok" if d["ok"] else "NOT DURABLE")
        elif d:
            text += " | rows %d of %s written" % (d["rows"], d["written"])
    else:
        text = "%s B/conn open %s/%s errors %s cpu %s" % (
            r.get("bytes_per_connection"), r.get("still_open"), r.get("requested"),
            r.get("connect_errors"), rec.get("broker_cpu_util"))
    print("round %d %-14s %-11s %s" % (rec["round"], rec["scenario"], rec["broker"], text),
          file=sys.stderr, flush=True)


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
        print("; ".join("%s pid %d port %d" % (b.name, b.pid, b.port) for b in brokers.values())
              + "; tmp " + tmp, file=sys.stderr)
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
    for b in brokers.values():
        if b.dead:
            print("\n%s was unusable: %s\n--- log tail ---\n%s" % (b.name, b.dead, b.output_tail()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": info, "summary": summary, "runs": records}, f, indent=1)
    if args.keep_tmp:
        print("broker configs, logs and databases kept in " + tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [r for r in records if (r.get("durability") or {}).get("ok") is False]
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
