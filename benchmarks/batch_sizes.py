#!/usr/bin/env python3
"""How many messages a webhook request and a group commit carry, single process vs tree.

The tree's CPU per acknowledged message is the sum over its processes; where it rises
against ``server.workers = 0`` the question is whether the fixed costs of a request
(HTTP, JSON, the COMMIT and its fsync) are spread over fewer messages. This starts the
durable mqttd once with ``server.workers = 0`` and once per ``--workers`` (metrics read
from every process through metrics_mqttd.py), runs loadgen.py at each ``--load
CONNECTIONSxWINDOW`` against each, alternating, and prints per run: msgs/s, CPU per
message by process, and from the counters of all processes the webhook requests the
ingest tier accepted, its group commits, messages per request and per commit.

    .venv/bin/python benchmarks/batch_sizes.py --load 10x10 --load 1000x10 --rounds 2
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import json

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import proctree  # noqa: E402
from brokers import make_mqttd, running, tree_name, tree_overrides  # noqa: E402

ACCEPTED = "ingest_requests{outcome=accepted}"
COUNTERS = (ACCEPTED, "ingest_commits", "ingest_rows_committed", "webhook_committed")


def counters(dumps):
    """The COUNTERS summed over every process of one read_metrics() dump."""
    return {k: sum(d.get(k, 0) for d in dumps.values()) for k in COUNTERS}


def batch_figures(before, after):
    """Requests, commits and messages per request / per commit between two dumps."""
    b, a = counters(before), counters(after)
    d = {k: a[k] - b[k] for k in COUNTERS}
    rows, requests, commits = d["ingest_rows_committed"], d[ACCEPTED], d["ingest_commits"]
    return {"requests": requests, "commits": commits, "rows": rows,
            "msgs_per_request": round(rows / requests, 1) if requests else None,
            "msgs_per_commit": round(rows / commits, 1) if commits else None}


def run_load(broker, connections, window, args, prefix):
    argv = [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
            "--connections", str(connections), "--window", str(window), "--duration",
            str(args.duration), "--client-prefix", prefix, "--broker-pid", str(broker.pid),
            "--source-ips", str(common.auto_source_ips(connections))]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 90).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load", action="append", help="CONNECTIONSxWINDOW (repeatable; default 10x10)")
    p.add_argument("--workers", type=int, action="append", help="default 2")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    a = p.parse_args(argv)
    a.mqttd_max_inflight, a.mqttd_extra_toml, a.mqttd_set = 1000, None, None
    loads = [tuple(int(x) for x in spec.split("x")) for spec in a.load or ["10x10"]]
    common.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="mqttd-batches-")
    brokers = [make_mqttd(tmp, a, "mqttd", metrics=True)] + [
        make_mqttd(tmp, a, tree_name(n), overrides=tree_overrides(n), metrics=True)
        for n in a.workers or [2]]
    print("%-6s %-9s %-5s %9s %8s %8s %9s %9s  %s" % (
        "load", "broker", "round", "msgs/s", "requests", "commits", "msgs/req", "msgs/commit",
        "CPU us per msg by process"))
    try:
        with running(brokers):
            for rnd in range(a.rounds):
                for c, w in loads:
                    order = brokers if rnd % 2 == 0 else brokers[::-1]
                    for b in order:
                        before = b.read_metrics()
                        res = run_load(b, c, w, a, "%s-%dx%d-r%d" % (b.name, c, w, rnd))
                        time.sleep(0.5)  # the last answers counted
                        f = batch_figures(before, b.read_metrics())
                        acked = res.get("acked") or 0
                        by = proctree.by_role(res.get("broker_cpu_by_process") or {})
                        print("%-6s %-9s %-5d %9.0f %8d %8d %9s %9s  %s" % (
                            "%dx%d" % (c, w), b.name, rnd, res["msgs_per_s"], f["requests"],
                            f["commits"], f["msgs_per_request"], f["msgs_per_commit"],
                            ", ".join("%s %.2f" % (k, v / acked * 1e6)
                                      for k, v in sorted(by.items()))
                            if acked else "-"), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
