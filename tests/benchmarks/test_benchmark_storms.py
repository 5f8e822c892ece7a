"""The storm benchmarks' pieces: the connect storm's outcomes, the door's counters and
log lines read back, the verdicts, and the metrics dump of metrics_mqttd.py.

The connect storm is run against tiny servers on loopback in a thread (one that answers
every CONNECT with a CONNACK, one that closes every socket at accept as the door does):
no broker, a handful of connections.
"""
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time

from twisted.trial import unittest

from mqttd.metrics import Metrics
from tests.support.accept_server import serve

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import connect_storm  # noqa: E402
import loadgen  # noqa: E402
import metrics_mqttd  # noqa: E402
import proctree  # noqa: E402
import storms  # noqa: E402


def connack(conn):
    data = b""
    while len(data) < 2 or len(data) < 2 + data[1]:
        data += conn.recv(256)
    conn.sendall(b"\x20\x02\x00\x00")
    conn.recv(16)  # the DISCONNECT, or the close
    conn.close()


def refuse(conn):
    conn.close()


class ConnectStormTests(unittest.TestCase):
    def storm(self, port, *extra):
        return connect_storm.run(connect_storm.parse_args(
            ["--port", str(port), "--connects", "20", "--duration", "5", "--concurrency", "4",
             "--source-ips", "3", "--connack-timeout", "2"] + list(extra)))

    def test_every_connect_answered_is_a_connack(self):
        out = self.storm(serve(self, connack))
        self.assertEqual((out["attempts"], out["connacks"], out["outcomes"], out["refused"]),
                         (20, 20, {"connack": 20}, 0))
        self.assertEqual(out["latency_ms"]["count"], 20)
        self.assertGreater(out["connacks_per_s"], 0)

    def test_a_socket_closed_at_accept_is_a_refusal(self):
        out = self.storm(serve(self, refuse), "--source", "127.0.0.99")
        self.assertEqual((out["attempts"], out["connacks"], out["refused"]), (20, 0, 20))
        self.assertEqual(set(out["outcomes"]) <= {"refused_eof", "refused_reset"}, True)
        self.assertEqual(out["sources"], ["127.0.0.99"])

    def test_held_connections_are_kept_until_the_last_connack(self):
        kept = []

        def connack_and_keep(conn):
            conn.recv(256)
            conn.sendall(b"\x20\x02\x00\x00")
            kept.append(conn)

        self.addCleanup(lambda: [c.close() for c in kept])
        out = self.storm(serve(self, connack_and_keep), "--hold", "30", "--max-open", "30")
        self.assertEqual((out["connacks"], out["open_peak"]), (20, 20))

    def test_connack_classification(self):
        self.assertIsNone(connect_storm.classify_connack(b"\x20\x02\x00"))
        self.assertEqual(connect_storm.classify_connack(b"\x20\x02\x01\x00"), "connack")
        self.assertEqual(connect_storm.classify_connack(b"\x20\x02\x00\x05"), "connack_rc_5")
        self.assertEqual(connect_storm.classify_connack(b"\x30\x02\x00\x00"), "bad_connack")

    def test_sources(self):
        args = connect_storm.parse_args(["--port", "1", "--source-ips", "3", "--first-ip", "7"])
        self.assertEqual(connect_storm.sources_from(args), ["127.0.0.7", "127.0.0.8", "127.0.0.9"])


LOG = """\
2026-12-07T10:57:01+0000 [mqttd.edge.door#info] refused 127.0.0.99 at accept: 100 connections open from it (limits.max_conn_per_ip)
2026-12-07T10:57:01+0000 [mqttd.edge.door#info] refused 127.0.0.99 at accept: over 100 connects a second from it (burst 200) (limits.max_conn_rate_per_ip)
2026-12-07T10:57:01+0000 [mqttd.edge.door#info] refused 127.0.0.99 at accept: over 100 connects a second from it (burst 200) (limits.max_conn_rate_per_ip)
2026-12-07T10:57:01+0000 [mqttd.edge.door#info] refused 127.0.0.9 at accept: banned address (limits.banned)
2026-12-07T10:57:02+0000 [mqttd.broker.lograte#info] suppressed 5000 log lines from 127.0.0.99 (over 100 per 60 s)
2026-12-07T10:57:03+0000 [mqttd.broker.lograte#info] suppressed 7 log lines from 127.0.0.9 (over 100 per 60 s)
2026-12-07T10:57:04+0000 [mqttd.broker.lograte#info] suppressed 12 log lines from 127.0.0.99 (over 100 per 60 s)
"""


class CountersTests(unittest.TestCase):
    def test_the_logs_refusal_lines_of_one_address_by_limit(self):
        self.assertEqual(storms.log_refusals(LOG, "127.0.0.99"), (
            {"limits.max_conn_per_ip": 1, "limits.max_conn_rate_per_ip": 2}, 5012))

    def test_refusals_between_two_dumps(self):
        before = {"mqttd-master": {"edge_refused{limit=limits.max_conn_per_ip}": 5,
                                   "edge_admitted": 9}}
        after = {"mqttd-master": {"edge_refused{limit=limits.max_conn_per_ip}": 25,
                                  "edge_admitted": 19,
                                  "edge_refused{limit=limits.max_conn_rate_per_ip}": 300},
                 "mqttd-worker-1": {"edge_refused{limit=limits.max_conn_per_ip}": 0}}
        self.assertEqual(storms.refused_by_limit(before, after), {
            "limits.max_conn_per_ip": 20, "limits.max_conn_rate_per_ip": 300})
        self.assertIsNone(storms.refused_by_limit(None, after))

    def test_a_signal_writes_every_registrys_series_summed(self):
        class Registry(Metrics):
            pass  # a subclass, so the patch stays in this test

        path = os.path.join(tempfile.mkdtemp(), "metrics.json")
        old = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, old)
        metrics_mqttd.install(Registry, path)
        a, b = Registry(), Registry()
        a.edge_refused["limits.max_conn_per_ip"] += 3
        b.edge_refused["limits.max_conn_per_ip"] += 4
        b.edge_admitted += 2
        os.kill(os.getpid(), signal.SIGUSR1)
        with open(path) as f:
            dumped = json.load(f)
        self.assertEqual((dumped["edge_refused{limit=limits.max_conn_per_ip}"],
                          dumped["edge_admitted"]), (7, 2))


def isolation(p99_quiet, p99_storm, missing=0, refused=None):
    dur = {"ok": 1, "runs": 1, "acked": 100, "missing": missing, "duplicated": 0, "foreign": 0}
    return {("isolation", "mqttd-w2", "quiet"): {"p99_ms": p99_quiet, "durability": dur},
            ("isolation", "mqttd-w2", "storm"): {"p99_ms": p99_storm, "durability": dur,
                                                 "edge_refused": refused or {}}}


class VerdictTests(unittest.TestCase):
    def verdicts(self, summary):
        return {row[0]: row[4] for row in storms.verdicts(summary, None)}

    def test_the_connect_rate_passes_at_5000_and_a_bound_generator_cannot_fail_it(self):
        def rate(r, gen):
            return {("connect", "mqttd-w2", "connect"): {"connacks_per_s": r, "gen_cores": gen}}
        key = "connects/s through the master"
        self.assertEqual(self.verdicts(rate(5000.0, 0.5))[key], "PASS")
        self.assertEqual(self.verdicts(rate(4999.0, 0.5))[key], "FAIL")
        self.assertEqual(self.verdicts(rate(4999.0, 0.95))[key], "UNPROVEN")

    def test_the_kept_storm_is_judged_on_its_own(self):
        v = self.verdicts({("connect-keep", "mqttd-w2", "connect-keep"): {
            "connacks_per_s": 5001.0, "gen_cores": 0.3}})
        self.assertEqual(v, {"connects/s through the master, kept": "PASS"})

    def test_isolation_at_its_boundaries(self):
        v = self.verdicts(isolation(10.0, 20.0, refused={"limits.max_conn_rate_per_ip": 5}))
        self.assertEqual((v["PUBACK p99 storm / quiet"], v["publishers lose nothing"],
                          v["flood refused by its limits"]), ("PASS", "PASS", "PASS"))
        v = self.verdicts(isolation(10.0, 20.1, missing=1))
        self.assertEqual((v["PUBACK p99 storm / quiet"], v["publishers lose nothing"],
                          v["flood refused by its limits"]), ("FAIL", "FAIL", "FAIL"))


class PacedLoadTests(unittest.TestCase):
    def test_rate_needs_qos1_and_a_duration(self):
        self.assertEqual(loadgen.parse_args(["--rate", "20", "--duration", "1"]).rate, 20.0)
        for bad in (["--rate", "20", "--messages", "10"], ["--rate", "0", "--duration", "1"],
                    ["--rate", "5", "--qos", "0", "--duration", "1"]):
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertRaises(SystemExit, loadgen.parse_args, bad)

    def test_pacing_raises_each_quota_to_the_schedule(self):
        class Conn:
            closed = False
            quota = 3

        sent = []
        worker = type("W", (), {"_send_more": lambda self, c, now: sent.append(c)})()
        a, b, gone = Conn(), Conn(), Conn()
        b.quota, gone.closed = 10, True
        loadgen.Worker._pace(worker, [a, b, gone], 4.7, 0.0)
        self.assertEqual((a.quota, b.quota, gone.quota, sent), (5, 10, 3, [a]))


TREE = r"""
import subprocess, sys, time
from mqttd.metrics import Metrics
m = Metrics()
m.edge_refused["limits.max_conn_rate_per_ip"] += 3
child = subprocess.Popen([sys.executable, "-c",
    "import time\nfrom mqttd.metrics import Metrics\nm = Metrics()\nm.webhook_committed += 5\n"
    "print('up', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print("up", flush=True)
time.sleep(30)
"""


class TreeMetricsTests(unittest.TestCase):
    def test_every_process_of_the_tree_answers_with_its_own_counters(self):
        import brokers

        d = tempfile.mkdtemp()
        broker = brokers.Broker("tree", "mqttd", [sys.executable, "-c", TREE], 0,
                                os.path.join(d, "log"), d)
        broker.metrics_dir = os.path.join(d, "metrics")
        os.mkdir(broker.metrics_dir)
        broker.env = dict(os.environ, MQTTD_METRICS_DIR=broker.metrics_dir, PYTHONPATH=os.pathsep.join(
            [os.path.join(BENCHMARKS, "metrics_site")] + sys.path))
        broker.start()
        self.addCleanup(broker.stop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(proctree.snapshot(broker.pid)) < 2:
            time.sleep(0.05)
        time.sleep(0.3)  # the child's registry made
        dumps = list(broker.read_metrics().values())
        self.assertEqual(len(dumps), 2)
        self.assertEqual(sorted((d["edge_refused{limit=limits.max_conn_rate_per_ip}"]
                                 if "edge_refused{limit=limits.max_conn_rate_per_ip}" in d else 0,
                                 d["webhook_committed"]) for d in dumps), [(0, 5), (3, 0)])
