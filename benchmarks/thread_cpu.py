#!/usr/bin/env python3
"""Which thread of mqttd spends the CPU per acknowledged message, user and kernel.

Starts one durable mqttd as compare.py does, runs loadgen.py against it, and reads
/proc/PID/task/*/stat before and after: user and system seconds per thread, divided by
the acknowledged messages. The reactor thread (parse, broker, webhook client and ingest
tier, both ends of the HTTP hop) and the SQLite writer thread (the inserts and the
fsynced COMMIT) are told apart, which compare.py's whole-tree figure cannot do.

    .venv/bin/python benchmarks/thread_cpu.py -c 10 --window 100
    .venv/bin/python benchmarks/thread_cpu.py -c 1000 --window 10
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import brokers  # noqa: E402
import common  # noqa: E402


def thread_ticks(pid):
    """{tid: (name, user ticks, system ticks)} of every thread of ``pid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
        fields = raw.rsplit(")", 1)[1].split()
        out[tid] = (raw[raw.index("(") + 1:raw.rindex(")")], int(fields[11]), int(fields[12]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", "-c", type=int, default=10)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--set", dest="mqttd_set", action="append", type=brokers.parse_set)
    p.add_argument("--mqttd-max-inflight", type=int, default=1000)
    p.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    args = p.parse_args()
    args.mqttd_extra_toml = None
    common.raise_nofile()
    broker = brokers.make_mqttd(tempfile.mkdtemp(prefix="thread-cpu-"), args)
    broker.start()
    try:
        broker.wait_port()
        time.sleep(0.5)
        before = thread_ticks(broker.pid)
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(broker.port),
             "--connections", str(args.connections), "--window", str(args.window),
             "--duration", str(args.seconds),
             "--source-ips", str(common.auto_source_ips(args.connections, 250))],
            capture_output=True, text=True, check=True)
        after = thread_ticks(broker.pid)
    finally:
        broker.stop()
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    acked = result["acked"]
    print(f"{args.connections} connections x window {args.window}: "
          f"{result['msgs_per_s']:,.0f} msgs/s, {acked:,} acknowledged")
    total_user = total_sys = 0.0
    for tid, (name, user, system) in sorted(after.items()):
        _, user0, system0 = before.get(tid, (name, 0, 0))
        user = (user - user0) / common.CLK_TCK
        system = (system - system0) / common.CLK_TCK
        total_user += user
        total_sys += system
        if user + system >= 0.05:
            name = "reactor (main)" if tid == str(broker.pid) else name
            print(f"  thread {tid} {name:16s} user {1e6 * user / acked:5.2f} + sys "
                  f"{1e6 * system / acked:5.2f} = {1e6 * (user + system) / acked:5.2f} us/msg")
    print(f"  all threads        user {1e6 * total_user / acked:5.2f} + sys "
          f"{1e6 * total_sys / acked:5.2f} = {1e6 * (total_user + total_sys) / acked:5.2f} us/msg")


if __name__ == "__main__":
    main()
