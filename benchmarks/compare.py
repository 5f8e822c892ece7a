#!/usr/bin/env python3
"""Side-by-side benchmark: Debian's mosquitto against mqttd, in one run.

Starts both brokers on ephemeral loopback ports (generated configs in a temp dir,
RLIMIT_NOFILE raised to the hard limit), then runs every selected scenario against
mosquitto and mqttd alternately, --rounds times, so machine noise hits both; prints a
table of medians and kills both brokers at the end whatever happens.

    .venv/bin/python benchmarks/compare.py                 # all scenarios, 3 rounds
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
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import common  # noqa: E402

SCENARIOS = {
    "qos1-w10": {"kind": "load", "qos": 1, "connections": 10, "window": 10,
                 "desc": "QoS 1, 10 connections, window 10"},
    "qos1-w100": {"kind": "load", "qos": 1, "connections": 10, "window": 100,
                  "desc": "QoS 1, 10 connections, window 100"},
    "qos0": {"kind": "load", "qos": 0, "connections": 10, "window": 1,
             "desc": "QoS 0, 10 connections"},
    "idle": {"kind": "idle", "desc": "idle connections, RSS per connection"},
}
BROKERS = ("mosquitto", "mqttd")


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


class Broker:
    def __init__(self, name, argv, port, log, cwd):
        self.name = name
        self.argv = argv
        self.port = port
        self.log = log
        self.cwd = cwd
        self.proc = None
        self.dead = None  # why it is unusable, once it is

    def start(self):
        out = open(os.path.join(self.cwd, self.name + ".stdout"), "wb")
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
        return tail(self.log) + tail(os.path.join(self.cwd, self.name + ".stdout"), 10)


def make_mosquitto(tmp, args, tag=""):
    d = os.path.join(tmp, "mosquitto" + tag)
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
    return Broker("mosquitto", [args.mosquitto, "-c", conf], port, log, d)


def make_mqttd(tmp, args, tag=""):
    d = os.path.join(tmp, "mqttd" + tag)
    data = os.path.join(d, "data")
    os.makedirs(data)
    port = free_port()
    log = os.path.join(d, "mqttd.log")
    cfg = os.path.join(d, "mqttd.toml")
    with open(cfg, "w") as f:
        f.write("[auth]\nallow_anonymous = true\n\n[broker]\nmax_inflight = %d\n"
                % args.mqttd_max_inflight)
        if args.mqttd_extra_toml:
            with open(args.mqttd_extra_toml) as extra:
                f.write("\n" + extra.read())
    argv = [args.twistd, "-n", "--pidfile", os.path.join(d, "twistd.pid"),
            "--logfile", log, "mqttd", "--config", cfg,
            "--listen", "tcp:%d:interface=127.0.0.1" % port, "--data-dir", data]
    return Broker("mqttd", argv, port, log, d)


FACTORIES = {"mosquitto": make_mosquitto, "mqttd": make_mqttd}


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
    rec = {"broker": broker.name, "scenario": name, "round": rnd}
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
                "--drain-timeout", str(args.drain_timeout)]
        res, err = run_json(argv, args.duration + args.drain_timeout + 60)
    else:
        argv = [sys.executable, os.path.join(HERE, "idle_rss.py"), "--port", str(broker.port),
                "--pid", str(broker.pid), "--tree", "--connections", str(args.idle_connections),
                "--client-prefix", prefix, "--settle", str(args.idle_settle)]
        res, err = run_json(argv, 240)
    wall = time.monotonic() - t0
    c1 = cpu_ticks(broker.pid)
    rec["wall_s"] = round(wall, 2)
    if c0 is not None and c1 is not None:
        rec["broker_cpu_util"] = round((c1 - c0) / os.sysconf("SC_CLK_TCK") / wall, 3)
    if res is not None:
        rec["result"] = res
    if err:
        rec["stderr" if res is not None else "error"] = err
    if not broker.alive():
        rec["broker_died"] = "exit %s" % broker.proc.returncode
        broker.dead = rec["broker_died"]
    return rec


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records, scenarios):
    summary = {}
    for name in scenarios:
        sc = SCENARIOS[name]
        row = {"desc": sc["desc"]}
        for b in BROKERS:
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
                s["error_kinds"] = sorted({k for r in ok for k in r.get("errors", {})})
            else:
                s["bytes_per_connection"] = med([r.get("bytes_per_connection") for r in ok])
                s["connected"] = med([r.get("still_open") for r in ok])
                s["error_kinds"] = sorted({k for r in ok for k in r.get("connect_errors", {})})
                s["errors"] += sum(sum(r.get("connect_errors", {}).values()) for r in ok)
            row[b] = s
        key = "msgs_per_s" if sc["kind"] == "load" else "bytes_per_connection"
        a, m = row["mosquitto"].get(key), row["mqttd"].get(key)
        row["ratio"] = round(m / a, 4) if a and m is not None else None
        summary[name] = row
    return summary


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


def print_table(summary, args, out=sys.stdout):
    w = out.write
    w("\n%-10s %13s %13s %8s  %-17s %-17s %s\n" % (
        "scenario", "mosquitto", "mqttd", "ratio", "mosq p50/p99 ms", "mqttd p50/p99 ms", "errors m/q"))
    for name, row in summary.items():
        a, m = row["mosquitto"], row["mqttd"]
        if "msgs_per_s" in a:
            star = "*" if SCENARIOS[name]["qos"] == 0 else ""
            w("%-10s %9s/s %11s/s %8s  %-17s %-17s %s/%s\n" % (
                name, fmt(a["msgs_per_s"]), fmt(m["msgs_per_s"]), fmt(row["ratio"], "{:.3f}"),
                "%s/%s%s" % (fmt(a["p50_ms"], "{:.2f}"), fmt(a["p99_ms"], "{:.2f}"), star),
                "%s/%s%s" % (fmt(m["p50_ms"], "{:.2f}"), fmt(m["p99_ms"], "{:.2f}"), star),
                a["errors"], m["errors"]))
        else:
            w("%-10s %11s B %11s B %8s  %-17s %-17s %s/%s\n" % (
                name, fmt(a["bytes_per_connection"]), fmt(m["bytes_per_connection"]),
                fmt(row["ratio"], "{:.2f}"),
                "open %s" % fmt(a["connected"]), "open %s" % fmt(m["connected"]),
                a["errors"], m["errors"]))
    w("(medians of %d rounds; msgs/s = PUBACKs/s for QoS 1, publishes read/s for QoS 0;"
      " ratio = mqttd/mosquitto;\n * QoS 0 latency is the PINGREQ round trip; idle rows:"
      " RSS bytes per idle connection, %d connections)\n" % (args.rounds, args.idle_connections))
    w("broker CPU (cores, median): %s\n" % ", ".join(
        "%s %s/%s" % (name, fmt(row["mosquitto"]["broker_cpu_util"], "{:.2f}"),
                      fmt(row["mqttd"]["broker_cpu_util"], "{:.2f}"))
        for name, row in summary.items()))
    w("loadgen CPU (cores, median, mosquitto/mqttd runs): %s\n" % ", ".join(
        "%s %s/%s" % (name, fmt(row["mosquitto"]["loadgen_cpu_util"], "{:.2f}"),
                      fmt(row["mqttd"]["loadgen_cpu_util"], "{:.2f}"))
        for name, row in summary.items() if "loadgen_cpu_util" in row["mosquitto"]))


def meta(args):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    mosq = cmd([args.mosquitto, "-h"]).splitlines()
    commit = cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "uncommitted"
    try:
        import twisted
        tw = twisted.__version__
    except ImportError:
        tw = None
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": commit, "mosquitto": mosq[0] if mosq else None, "twisted": tw,
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "duration_s": args.duration, "rounds": args.rounds,
            "payload_size": args.payload_size, "idle_connections": args.idle_connections}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS) + ["all"],
                   help="repeatable; default all (%s)" % ", ".join(SCENARIOS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    p.add_argument("--drain-timeout", type=float, default=15.0)
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--idle-connections", type=int, default=10000)
    p.add_argument("--idle-settle", type=float, default=2.0)
    p.add_argument("--json", metavar="FILE", help="write all runs and the summary here")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    p.add_argument("--mqttd-max-inflight", type=int, default=1000)
    p.add_argument("--mqttd-extra-toml", metavar="FILE",
                   help="appended to the generated mqttd config (e.g. to lift edge limits)")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and broker logs")
    a = p.parse_args(argv)
    if not a.scenario or "all" in a.scenario:
        a.scenario = list(SCENARIOS)
    a.scenario = [s for s in SCENARIOS if s in a.scenario]
    return a


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    soft, hard, _ = common.raise_nofile()
    need = args.idle_connections + 200
    if "idle" in args.scenario and soft < need:
        print("warning: RLIMIT_NOFILE hard limit %d < %d: the idle scenario will open fewer "
              "connections" % (hard, need), file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="mqttd-compare-")
    brokers = [make_mosquitto(tmp, args), make_mqttd(tmp, args)]
    records = []
    info = meta(args)
    t_start = time.monotonic()
    try:
        for b in brokers:
            b.start()
        for b in brokers:
            try:
                b.wait_port()
            except RuntimeError as e:
                b.dead = str(e)
                print("%s: %s\n--- log tail ---\n%s" % (b.name, e, b.output_tail()), file=sys.stderr)
        print("mosquitto pid %d port %d; mqttd pid %d port %d; tmp %s" % (
            brokers[0].pid, brokers[0].port, brokers[1].pid, brokers[1].port, tmp), file=sys.stderr)
        for rnd in range(args.rounds):
            for name in args.scenario:
                for b in brokers:  # alternate: mosquitto, mqttd, mosquitto, mqttd, ...
                    if b.dead:
                        records.append({"broker": b.name, "scenario": name, "round": rnd,
                                        "error": "broker unusable: " + b.dead})
                        continue
                    if SCENARIOS[name]["kind"] == "idle":
                        # A fresh broker each time: after the first wave of connections
                        # closes, both allocators reuse the freed memory and a second
                        # wave on the same process shows (close to) 0 B per connection.
                        fresh = FACTORIES[b.name](tmp, args, "-idle-r%d" % rnd)
                        fresh.start()
                        try:
                            fresh.wait_port()
                            time.sleep(0.5)
                            rec = run_one(fresh, name, SCENARIOS[name], rnd, args)
                        except RuntimeError as e:
                            rec = {"broker": b.name, "scenario": name, "round": rnd,
                                   "error": str(e) + "\n" + fresh.output_tail()}
                        finally:
                            fresh.stop()
                    else:
                        rec = run_one(b, name, SCENARIOS[name], rnd, args)
                    records.append(rec)
                    r = rec.get("result", {})
                    print("round %d %-9s %-9s %s" % (
                        rnd, name, b.name,
                        rec.get("error") or (
                            "%s msgs/s p50 %s p99 %s errors %s cpu %s" % (
                                r.get("msgs_per_s"), (r.get("latency_ms") or r.get("ping_rtt_ms") or {}).get("p50"),
                                (r.get("latency_ms") or r.get("ping_rtt_ms") or {}).get("p99"),
                                r.get("errors"), rec.get("broker_cpu_util"))
                            if SCENARIOS[name]["kind"] == "load" else
                            "%s B/conn open %s/%s errors %s cpu %s" % (
                                r.get("bytes_per_connection"), r.get("still_open"),
                                r.get("requested"), r.get("connect_errors"),
                                rec.get("broker_cpu_util")))),
                        file=sys.stderr, flush=True)
                    if rec.get("broker_died"):
                        print("%s died (%s); log tail:\n%s" % (b.name, rec["broker_died"], b.output_tail()),
                              file=sys.stderr)
                    time.sleep(0.3)
    finally:
        for b in brokers:
            b.stop()
    info["wall_s"] = round(time.monotonic() - t_start, 1)
    summary = summarize(records, args.scenario)
    print("%s; commit %s; %s; %d rounds x %.0f s; wall %.0f s" % (
        info["date"], info["commit"], info["mosquitto"], args.rounds, args.duration, info["wall_s"]))
    print_table(summary, args)
    for b in brokers:
        if b.dead:
            print("\n%s was unusable: %s\n--- log tail ---\n%s" % (b.name, b.dead, b.output_tail()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": info, "summary": summary, "runs": records}, f, indent=1)
    if args.keep_tmp:
        print("broker configs and logs kept in " + tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
