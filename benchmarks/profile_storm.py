#!/usr/bin/env python3
"""Where the tree spends a connect storm: py-spy on the master and on one worker at once.

Starts the durable mqttd as a tree (``server.workers``, default 2) the way storms.py
does, runs connect_storm.py against it (20 loopback addresses, close after CONNACK), and
after --warmup seconds samples the master and worker 1 with ``py-spy record --format raw
--nonblocking`` for --seconds; prints the storm's figures, each process's CPU per
connect over the sampled storm, and per process the top functions by self and inclusive
time (profile_mqttd.py's summary). py-spy slows what it samples: the storm rate printed
is below storms.py's.

    .venv/bin/pip install py-spy        # once
    .venv/bin/python benchmarks/profile_storm.py --seconds 6
"""
import argparse
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
import proctree  # noqa: E402
from profile_mqttd import parse_raw, top  # noqa: E402


def record(py_spy, pid, seconds, rate, raw):
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(round(seconds))),
                             "-r", str(rate), "-f", "raw", "--nolineno", "--nonblocking",
                             "-o", raw], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def summary(name, raw, n):
    stacks = [s for stacks in parse_raw(raw).values() for s in stacks]
    total, self_top, incl_top = top(stacks, n)
    print("\n== %s: %d samples ==" % (name, total))
    print("  %-6s  %s" % ("self%", "function"))
    for fr, c in self_top:
        print("  %5.1f%%  %s" % (100.0 * c / total, fr))
    print("  %-6s  %s" % ("incl%", "function (frames in >= 80% of samples left out)"))
    for fr, c in [(fr, c) for fr, c in incl_top if c < 0.8 * total][:n]:
        print("  %5.1f%%  %s" % (100.0 * c / total, fr))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rate", type=int, default=100, help="samples a second")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    p.add_argument("--py-spy", default=shutil.which("py-spy") or os.path.join(
        os.path.dirname(sys.executable), "py-spy"))
    a = p.parse_args(argv)
    a.mqttd_max_inflight, a.mqttd_extra_toml, a.mqttd_set = 1000, None, None
    tmp = tempfile.mkdtemp(prefix="mqttd-profile-storm-")
    broker = brokers.make_mqttd(tmp, a, brokers.tree_name(a.workers),
                                overrides=brokers.tree_overrides(a.workers))
    raws = {}
    try:
        broker.start()
        broker.wait_port()
        time.sleep(2.0)
        pids = {proc.name: proc.pid for proc in proctree.snapshot(broker.pid)}
        storm = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "connect_storm.py"), "--port", str(broker.port),
             "--duration", str(a.warmup + a.seconds + 1), "--concurrency", str(a.concurrency),
             "--broker-pid", str(broker.pid)], stdout=subprocess.PIPE, text=True)
        time.sleep(a.warmup)
        b0 = proctree.snapshot(broker.pid)
        spies = {}
        for name in ("mqttd-master", "mqttd-worker-1"):
            raws[name] = os.path.join(tmp, name + ".raw")
            spies[name] = record(a.py_spy, pids[name], a.seconds, a.rate, raws[name])
        for spy in spies.values():
            spy.wait(timeout=a.seconds + 60)
        b1 = proctree.snapshot(broker.pid)
        res = json.loads(storm.communicate(timeout=a.seconds + 60)[0].strip().splitlines()[-1])
    finally:
        broker.stop()
    print("storm: %s connects/s (whole run, %s sampled), p50/p99 %s/%s ms, generator %s cores"
          % (res["connacks_per_s"], a.seconds, res["latency_ms"]["p50"], res["latency_ms"]["p99"],
             res["gen_cores"]))
    ticks = proctree.ticks_by_name(b0, b1)
    print("CPU while sampled (s): %s" % ", ".join(
        "%s %.2f" % (k, v / os.sysconf("SC_CLK_TCK")) for k, v in sorted(ticks.items())))
    for name, raw in raws.items():
        summary(name, raw, a.top)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
