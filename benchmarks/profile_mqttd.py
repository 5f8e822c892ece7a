#!/usr/bin/env python3
"""Where mqttd spends its time under durable QoS 1 load: py-spy, summarised as text.

Starts one mqttd exactly as compare.py does (durable defaults, loopback, temp dir), runs
loadgen.py against it, and after --warmup seconds samples the twistd process with
``py-spy record --format raw`` (all threads, idle frames excluded) for --seconds. Prints:

* samples per thread (the reactor thread vs the SQLite writer thread);
* the top functions by SELF time and by INCLUSIVE time, as % of the reactor thread's
  samples (module:function; one entry per function however deep the recursion);
* the load generator's figures and the row count, so the profiled load is known.

    .venv/bin/pip install py-spy            # once
    .venv/bin/python benchmarks/profile_mqttd.py                          # QoS 1 w100 10 conns
    .venv/bin/python benchmarks/profile_mqttd.py --window 10 --set ingest.flush_interval=0
    .venv/bin/python benchmarks/profile_mqttd.py -c 1000 --window 10 --no-profile \
        --gc-threshold 50000,20,100        # A/B: the cost of cyclic GC, mqttd untouched

py-spy needs ptrace rights on the broker (root, or kernel.yama.ptrace_scope=0). Sampling
pauses the process briefly at --rate Hz, so the throughput printed is a little lower than
compare.py's. Nothing here changes mqttd.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import brokers  # noqa: E402
import common  # noqa: E402
import durability  # noqa: E402


def parse_raw(path):
    """py-spy raw (folded) output -> {thread: [(frames tuple, count)]}."""
    threads = collections.defaultdict(list)
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            thread = frames[0] if frames[0].startswith("thread (") else "all"
            if thread != "all":
                frames = frames[1:]
            # skip py-spy's process line ("process 123:...") when present
            if frames and frames[0].startswith("process "):
                frames = frames[1:]
            frames = tuple(short(fr) for fr in frames)
            if frames and frames[-1] in IDLE_LEAVES:
                continue  # a pool thread parked on its queue: idle, whatever py-spy thought
            threads[thread].append((frames, int(count)))
    return threads


def short(frame):
    """'func (path/to/module.py)' -> 'module.py:func' (keeps enough to find it)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    if where:
        parts = where.split("/")
        where = "/".join(parts[-2:]) if len(parts) > 1 else where
        return "%s:%s" % (where, name)
    return name


# Components, matched from the innermost frame outward: the first frame that matches
# decides where a sample's (self) time belongs. json/base64/Deferred frames match nothing,
# so their time goes to whoever called them (e.g. JSON encoding -> "encode batch", a
# Deferred fired per message -> whoever fired it).
IDLE_LEAVES = ("threading.py:Condition.wait", "threading.py:Lock.acquire", "queue.py:Queue.get")

COMPONENTS = (
    ("(waiting in epoll_wait: doPoll's own time)", lambda f: f == "internet/epollreactor.py:EPollReactor.doPoll"),
    ("webhook client: encode batch (JSON+base64)", lambda f: f.startswith("ingest/wire.py:encode_batch")),
    ("webhook client: decode result", lambda f: f.startswith("ingest/wire.py:decode_result")),
    ("ingest tier: decode batch (JSON+base64, Message objects)",
     lambda f: f.startswith("ingest/wire.py:")),
    ("ingest tier: group-commit writer", lambda f: f.startswith("ingest/writer.py:")),
    ("ingest tier: SQLite store, reactor side", lambda f: f.startswith("store/sqlite.py:")),
    ("ingest tier: resource (render_POST, body, answer)", lambda f: f.startswith("ingest/resource.py:")),
    ("ingest tier: twisted.web HTTP server", lambda f: f.startswith(("web/http.py:", "web/server.py:",
                                                                     "web/resource.py:"))),
    ("webhook client: WebhookSink (batching, acks)", lambda f: f.startswith((
        "ingest/client.py:", "ingest/batching.py:", "ingest/linger.py:", "ingest/overload.py:",
        "ingest/poster.py:", "ingest/settle.py:"))),
    ("webhook client: treq/Agent HTTP client", lambda f: f.startswith((
        "treq/", "web/client.py:", "web/_newclient.py:", "web/iweb.py:", "web/http_headers.py:"))
     or f.split(":")[0] in ("treq/client.py", "treq/response.py", "treq/content.py")),
    ("MQTT: codec (parse/encode)", lambda f: f.startswith("codec/")),
    ("MQTT: broker/protocol (sessions, store call, ordered acks)", lambda f: f.startswith("broker/")),
    ("reactor, TCP, timers", lambda f: f.startswith(("internet/", "python/log.py", "python/context.py"))
     and not f.startswith("internet/defer.py")),
)


def components(stacks):
    out = collections.Counter()
    for frames, count in stacks:
        label = "other"
        for fr in reversed(frames):
            if fr == "internet/epollreactor.py:EPollReactor.doPoll" and fr != frames[-1]:
                continue  # only doPoll's self time is waiting; its callees are work
            for name, match in COMPONENTS:
                if match(fr):
                    label = name
                    break
            if label != "other":
                break
        out[label] += count
    return out


def top(stacks, n):
    total = sum(c for _, c in stacks) or 1
    self_t = collections.Counter()
    incl = collections.Counter()
    for frames, count in stacks:
        if frames:
            self_t[frames[-1]] += count
        for fr in set(frames):
            incl[fr] += count
    return total, self_t.most_common(n), incl.most_common(n + 40)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", "-c", type=int, default=10)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--qos", type=int, default=1, choices=(0, 1))
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--seconds", type=float, default=6.0, help="sampling time")
    p.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
    p.add_argument("--blocking", action="store_true",
                   help="let py-spy pause mqttd for each sample (exact stacks, much slower "
                        "broker); default --nonblocking")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--set", dest="mqttd_set", action="append", type=brokers.parse_set,
                   metavar="SECTION.KEY=VALUE", help="mqttd config override (repeatable)")
    p.add_argument("--mqttd-extra-toml", metavar="FILE")
    p.add_argument("--mqttd-max-inflight", type=int, default=1000)
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    p.add_argument("--py-spy", default=shutil.which("py-spy") or os.path.join(
        os.path.dirname(sys.executable), "py-spy"))
    p.add_argument("--raw", metavar="FILE", help="also keep py-spy's raw folded stacks here")
    p.add_argument("--gc-threshold", metavar="G0[,G1,G2]",
                   help="experiment without touching mqttd: start twistd through a wrapper "
                        "that calls gc.set_threshold(...) first (e.g. 50000,20,100)")
    p.add_argument("--no-profile", action="store_true",
                   help="skip py-spy: just the load figures (for A/B runs, e.g. --gc-threshold)")
    p.add_argument("--keep-tmp", action="store_true")
    a = p.parse_args(argv)
    if not a.no_profile and not os.path.exists(a.py_spy):
        sys.exit("py-spy not found: %s/pip install py-spy" % os.path.dirname(sys.executable))

    tmp = tempfile.mkdtemp(prefix="mqttd-profile-")
    broker = brokers.make_mqttd(tmp, a)
    if a.gc_threshold:
        g = [int(x) for x in a.gc_threshold.split(",")]
        broker.argv = [sys.executable, "-c",
                       "import gc, sys; gc.set_threshold(%s); sys.argv[0] = 'twistd'; "
                       "from twisted.scripts.twistd import run; run()" % ", ".join(map(str, g))
                       ] + broker.argv[1:]
    raw = os.path.join(tmp, "pyspy.raw")
    duration = a.warmup + a.seconds + 1.0
    lg = None
    try:
        broker.start()
        broker.wait_port()
        time.sleep(0.5)
        lg = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
             "--connections", str(a.connections), "--qos", str(a.qos), "--window",
             str(a.window), "--duration", str(duration), "--client-prefix", "profile",
             "--source-ips", str(common.auto_source_ips(a.connections))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(a.warmup)
        spy = None if a.no_profile else subprocess.run(
            [a.py_spy, "record", "-p", str(broker.pid), "-d", str(int(round(a.seconds))),
             "-r", str(a.rate), "-f", "raw", "--nolineno", "-t", "-o", raw]
            + ([] if a.blocking else ["--nonblocking"]),
            capture_output=True, text=True, timeout=a.seconds + 60)
        out, err = lg.communicate(timeout=duration + 60)
        lg = None
        res = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-500:]}
        verdict = durability.check_run(broker.db, "profile", res, a.qos, settle=10.0)
    finally:
        if lg is not None:
            lg.kill()
        broker.stop()
    if spy is not None and (spy.returncode != 0 or not os.path.exists(raw)):
        sys.exit("py-spy failed (%s): %s" % (spy.returncode, spy.stderr[-1000:]))
    if a.raw and spy is not None:
        shutil.copy(raw, a.raw)

    lat = res.get("latency_ms") or {}
    print("load: QoS %d, %d connections, window %d: %s msgs/s, PUBACK p50 %s p99 %s ms, "
          "errors %s; %s" % (
              a.qos, a.connections, a.window, res.get("msgs_per_s"), lat.get("p50"),
              lat.get("p99"), res.get("errors"), verdict["text"]))
    print("mqttd config: %s%s" % (json.dumps(brokers.mqttd_config(a)),
                                  "; gc.set_threshold(%s)" % a.gc_threshold if a.gc_threshold else ""))
    if spy is None:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    threads = parse_raw(raw)
    counts = {t: sum(c for _, c in s) for t, s in threads.items()}
    expected = a.rate * a.seconds
    print("py-spy: %d Hz x %g s = ~%d samples per busy thread; active samples per thread: %s"
          % (a.rate, a.seconds, expected,
             ", ".join("%s %d (%.0f%% busy)" % (t, c, 100.0 * c / expected)
                       for t, c in sorted(counts.items(), key=lambda kv: -kv[1]))))
    for t, stacks in sorted(threads.items(), key=lambda kv: -counts[kv[0]]):
        total, self_top, incl_top = top(stacks, a.top)
        if total < 0.05 * expected:
            continue
        print("\n== %s: %d samples ==" % (t, total))
        print("  %-6s  %s" % ("self%", "function"))
        for fr, c in self_top:
            print("  %5.1f%%  %s" % (100.0 * c / total, fr))
        print("  %-6s  %s" % ("incl%", "function (frames in >= 80% of samples left out)"))
        for fr, c in [(fr, c) for fr, c in incl_top if c < 0.8 * total][:a.top]:
            print("  %5.1f%%  %s" % (100.0 * c / total, fr))
        if "MainThread" in t:
            print("  %-6s  %s" % ("self%", "by component (innermost matching frame)"))
            for name, c in components(stacks).most_common():
                print("  %5.1f%%  %s" % (100.0 * c / total, name))
    if a.keep_tmp:
        print("kept " + tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
