"""What TLS terminated in the master costs: QoS 1 publishers over ssl: and over tcp: on
the real tree (``server.workers = 2``, durable: PUBACK after the commit), side by side.

Run: ``.venv/bin/python benchmarks/bench_tls_relay.py`` from the repository root
(options: ``--rate`` messages/s of the paced scenario, ``--seconds``, ``--rounds``).

Two scenarios, each over tcp and over TLS in alternating order, ``--rounds`` times:

- ``paced``: ``--conns`` publishers (window 10 each) at ``--rate`` messages/s in total,
  100-byte payloads: CPU per acknowledged message of the master, of the workers, of
  the ingest child and of all of them, and the PUBACK p50/p99;
- ``bulk``: the relay's throughput: 4 publishers, window 10, 16 KiB payloads, as fast
  as the tree acknowledges: payload MB/s and the master's CPU per relayed MB.

CPU is read from /proc (user + system clock ticks of each process over the timed
window, from the first PUBLISH to the last PUBACK). The publishers are threads with
blocking sockets (Python's ssl for TLS), in this process: they share the machine's
cores with the tree, as every benchmark here does. Prints one JSON line per run and a
table of medians, and the master's TLS cost: master CPU per message over TLS minus
over tcp.
"""
import argparse
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import CLK_TCK, connect_packet, publish_packet  # noqa: E402

PUBACK = b"\x40\x02"
_LISTENING = re.compile(r"mqttd listening on (tcp|ssl):0:\S* \([^)]*:(\d+)\)")


def _certificate():
    import twisted.test
    return os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


class Tree:
    """twistd mqttd with workers = 2, a tcp: and an ssl: listener on 127.0.0.1."""

    def __init__(self, twistd):
        self.dir = tempfile.mkdtemp(prefix="bench-tls-")
        config = os.path.join(self.dir, "mqttd.toml")
        with open(config, "w") as f:
            f.write("[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n")
        self.log = open(os.path.join(self.dir, "mqttd.log"), "w")
        self.process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "mqttd", "--config", config,
             "--data-dir", os.path.join(self.dir, "data"),
             "--listen", "tcp:0:interface=127.0.0.1",
             "--listen", f"ssl:0:interface=127.0.0.1:privateKey={_certificate()}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ports = {}
        deadline = time.monotonic() + 30
        while len(self.ports) < 2 or self._workers_ready() < 2:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the tree did not start; see {self.log.name}")
            time.sleep(0.1)
            for kind, port in _LISTENING.findall(self._output()):
                self.ports[kind] = int(port)

    def _output(self):
        with open(self.log.name) as f:
            return f.read()

    def _workers_ready(self):
        return self._output().count("] worker ") and len(re.findall(r"worker \d ready",
                                                                    self._output()))

    def processes(self):
        """{name: pid} of the master and its children, by their process names."""
        named = {"master": self.process.pid}
        with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
            for pid in map(int, f.read().split()):
                with open(f"/proc/{pid}/comm") as c:
                    named[c.read().strip().removeprefix("mqttd-")] = pid
        return named

    def stop(self):
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_ticks(pids):
    ticks = {}
    for name, pid in pids.items():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks[name] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


class Publisher(threading.Thread):
    """One client: CONNECT, then QoS 1 PUBLISHes with ``window`` in flight at most, at
    ``rate`` a second (0: as fast as the PUBACKs come) until ``end``, then the last acks."""

    def __init__(self, port, tls, client_id, payload, window, rate, start_at, end):
        super().__init__(daemon=True)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        sock.sendall(connect_packet(client_id))
        if _recv_exactly(sock, 4)[3] != 0:
            raise SystemExit(f"{client_id}: CONNECT refused")
        self.sock, self.payload, self.window = sock, payload, window
        self.interval = 1.0 / rate if rate else 0.0
        self.start_at, self.end = start_at, end
        self.acked, self.latencies = 0, []

    def run(self):
        sock, sent_at, buffer = self.sock, {}, b""
        due, pid = self.start_at, 0
        while time.monotonic() < self.start_at:
            time.sleep(0.001)
        while True:
            now = time.monotonic()
            while now < self.end and len(sent_at) < self.window and due <= now:
                pid = pid % 65535 + 1
                sock.sendall(publish_packet("bench/tls", self.payload, qos=1, packet_id=pid))
                sent_at[pid] = now
                due += self.interval
            if now >= self.end and not sent_at:
                return
            if now >= self.end + 30:
                raise SystemExit("PUBACKs missing 30 s after the end")
            wait = self.end + 30 - now
            if len(sent_at) < self.window and now < self.end:
                wait = min(wait, max(due - now, 0.0005))
            sock.settimeout(wait)
            try:
                data = sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            if not data:
                raise SystemExit("the broker closed a publisher")
            buffer += data
            got = time.monotonic()
            while len(buffer) >= 4:
                if buffer[:2] != PUBACK:
                    raise SystemExit(f"expected PUBACK, got {buffer[:4]!r}")
                acked = struct.unpack("!H", buffer[2:4])[0]
                buffer = buffer[4:]
                self.latencies.append(got - sent_at.pop(acked))
                self.acked += 1

    def close(self):
        self.sock.close()


def _recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise SystemExit("the broker closed the connection")
        data += chunk
    return data


def run(tree, kind, scenario, args, round_):
    paced = scenario == "paced"
    conns = args.conns if paced else 4
    payload = os.urandom(50).hex().encode() if paced else os.urandom(16384)
    rate = args.rate / conns if paced else 0
    start_at = time.monotonic() + 1.0
    end = start_at + args.seconds
    publishers = [Publisher(tree.ports[kind], kind == "ssl", f"{scenario}-{kind}-{round_}-{n}",
                            payload, 10, rate, start_at, end) for n in range(conns)]
    pids = tree.processes()
    for p in publishers:
        p.start()
    while time.monotonic() < start_at:
        time.sleep(0.001)
    before, t0 = cpu_ticks(pids), time.monotonic()
    for p in publishers:
        p.join()
    after, elapsed = cpu_ticks(pids), time.monotonic() - t0
    for p in publishers:
        p.close()
    acked = sum(p.acked for p in publishers)
    latencies = sorted(x for p in publishers for x in p.latencies)
    cpu = {name: (after[name] - before[name]) / CLK_TCK for name in pids}
    workers = sum(v for name, v in cpu.items() if name.startswith("worker"))
    result = {
        "scenario": scenario, "listener": "tls" if kind == "ssl" else "tcp", "round": round_,
        "msgs_per_s": acked / elapsed, "acked": acked,
        "payload_mb_per_s": acked * len(payload) / elapsed / 1e6,
        "master_us_per_msg": cpu["master"] / acked * 1e6,
        "workers_us_per_msg": workers / acked * 1e6,
        "ingest_us_per_msg": cpu.get("ingest", 0) / acked * 1e6,
        "tree_us_per_msg": sum(cpu.values()) / acked * 1e6,
        "master_ms_per_mb": cpu["master"] / (acked * len(payload) / 1e6) * 1e3,
        "master_cpu_share": cpu["master"] / elapsed,
        "puback_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "puback_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable),
                                                         "twistd"))
    args = parser.parse_args()
    tree = Tree(args.twistd)
    results = []
    try:
        for round_ in range(args.rounds):
            kinds = ("tcp", "ssl") if round_ % 2 == 0 else ("ssl", "tcp")
            for scenario in ("paced", "bulk"):
                for kind in kinds:
                    results.append(run(tree, kind, scenario, args, round_))
    finally:
        tree.stop()
    columns = ("msgs_per_s", "payload_mb_per_s", "master_us_per_msg", "workers_us_per_msg",
               "ingest_us_per_msg", "tree_us_per_msg", "master_ms_per_mb",
               "master_cpu_share", "puback_p50_ms", "puback_p99_ms")
    medians = {}
    print("\nmedians of %d rounds" % args.rounds)
    print("scenario listener " + " ".join(columns))
    for scenario in ("paced", "bulk"):
        for listener in ("tcp", "tls"):
            rows = [r for r in results if (r["scenario"], r["listener"]) == (scenario, listener)]
            medians[scenario, listener] = m = {
                c: statistics.median(r[c] for r in rows) for c in columns}
            print(f"{scenario} {listener} " + " ".join(f"{m[c]:.2f}" for c in columns))
    for scenario in ("paced", "bulk"):
        tcp, tls = medians[scenario, "tcp"], medians[scenario, "tls"]
        print(f"{scenario}: the master's TLS cost {tls['master_us_per_msg'] - tcp['master_us_per_msg']:.1f}"
              f" us/msg; the tree's {tls['tree_us_per_msg'] - tcp['tree_us_per_msg']:.1f} us/msg"
              f" ({tls['tree_us_per_msg'] / tcp['tree_us_per_msg']:.2f}x)")


if __name__ == "__main__":
    main()
