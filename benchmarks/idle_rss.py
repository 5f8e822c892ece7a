#!/usr/bin/env python3
"""Broker memory per idle MQTT connection: one JSON line on stdout.

Reads the broker's VmRSS (/proc/PID/status; with --tree, summed over PID and all its
descendants, for a broker made of several processes such as mqttd's master, workers and
ingest child, and also per process: "processes", "rss_delta_by_process"), opens K
connections (CONNECT with keepalive 0 by default, waits for each CONNACK), waits
--settle seconds, reads the RSS again, checks the connections are still open, and prints
(rss_after - rss_before) / connections_still_open as bytes_per_connection.

Raises its own RLIMIT_NOFILE toward K + 64 (up to the hard limit); when the hard limit
is too low it says so on stderr and in the output ("nofile_ok": false) and opens as many
as it can. The broker needs a high enough limit too (compare.py raises it).
"""
import argparse
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import proctree  # noqa: E402


def sample_rss(pid, tree, n=3, gap=0.2):
    """Median of a few samples (RSS moves a little while allocators settle)."""
    vals = []
    for i in range(n):
        v = common.tree_rss(pid, tree)
        if v is None:
            return None
        vals.append(v)
        if i + 1 < n:
            time.sleep(gap)
    vals.sort()
    return vals[len(vals) // 2]


def still_open(conns):
    """Connections the broker has not closed (EOF/RST shows as readable)."""
    alive = 0
    poller = select.poll()
    by_fd = {}
    for c in conns:
        if c.sock is not None:
            poller.register(c.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            by_fd[c.sock.fileno()] = c
    readable = {fd for fd, _ in poller.poll(0)}
    unexpected = 0
    for fd, c in by_fd.items():
        if fd not in readable:
            alive += 1
            continue
        try:
            data = c.sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            alive += 1
            continue
        except OSError:
            continue
        if data:  # broker sent something (e.g. a PINGREQ answer we never asked for)
            unexpected += 1
            alive += 1
    return alive, unexpected


def run(args):
    out = {"tool": "idle_rss", "host": args.host, "port": args.port, "pid": args.pid,
           "tree": args.tree, "requested": args.connections}
    want = args.connections + 64
    soft, hard, ok = common.raise_nofile(want)
    out["nofile"] = [soft, hard]
    out["nofile_ok"] = ok
    k = args.connections
    if not ok:
        k = max(0, soft - 64)
        msg = ("idle_rss: RLIMIT_NOFILE hard limit %d cannot cover %d connections; "
               "opening %d instead (raise the hard limit: ulimit -Hn / limits.conf)"
               % (hard, args.connections, k))
        print(msg, file=sys.stderr)
        out["note"] = msg
    out["source_ips"] = args.source_ips
    before = sample_rss(args.pid, args.tree)
    procs_before = proctree.snapshot(args.pid) if args.tree else []
    if before is None:
        out["error"] = "no process %d" % args.pid
        return out
    conns = []
    for i in range(k):
        cid = "%s-%d" % (args.client_prefix, i)
        conns.append(common.Conn(i, cid, common.connect_packet(
            cid, keepalive=args.keepalive, username=args.username, password=args.password)))
    ok_conns, errors, secs = common.open_connections(
        args.host, args.port, conns, args.source_ips, timeout=args.connect_timeout,
        max_pending=args.max_pending)
    out["connected"] = len(ok_conns)
    out["connect_s"] = round(secs, 3)
    out["connect_errors"] = errors
    time.sleep(args.settle)
    after = sample_rss(args.pid, args.tree)
    if args.tree:
        procs_after = proctree.snapshot(args.pid)
        # which processes were summed, and what each one grew by
        out["processes"] = sorted(p.name for p in procs_after)
        b = proctree.rss_by_name(procs_before)
        out["rss_delta_by_process"] = {
            name: rss - b.get(name, 0) for name, rss in proctree.rss_by_name(procs_after).items()}
    alive, unexpected = still_open(ok_conns)
    out["still_open"] = alive
    if unexpected:
        out["unexpected_data"] = unexpected
    out["rss_before"] = before
    out["rss_after"] = after
    if after is None:
        out["error"] = "broker process %d vanished while connections were open" % args.pid
    elif alive:
        out["bytes_per_connection"] = round((after - before) / alive, 1)
    else:
        out["bytes_per_connection"] = None
    common.close_all(ok_conns, polite=True)
    if args.after_close_wait > 0 and after is not None:
        time.sleep(args.after_close_wait)
        out["rss_after_close"] = common.tree_rss(args.pid, args.tree)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--pid", type=int, required=True, help="broker process id")
    p.add_argument("--tree", action="store_true",
                   help="sum RSS over the pid and all its descendants")
    p.add_argument("--connections", "-c", type=int, default=10000)
    p.add_argument("--keepalive", type=int, default=0)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--client-prefix", default="idle-%d" % os.getpid())
    p.add_argument("--source-ips", type=int, default=None,
                   help="spread over 127.0.0.1..127.0.0.N (default: 1 per 250 connections, max 50)")
    p.add_argument("--max-pending", type=int, default=256,
                   help="handshakes in progress at once (default 256)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds to wait after the last CONNACK before measuring (default 2)")
    p.add_argument("--after-close-wait", type=float, default=1.0,
                   help="seconds after closing before a last RSS reading (0: skip)")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.source_ips is None:
        a.source_ips = common.auto_source_ips(a.connections)
    return a


def main(argv=None):
    out = run(parse_args(argv))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0 if out.get("bytes_per_connection") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
