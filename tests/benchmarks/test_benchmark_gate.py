"""The gate benchmark's pieces (gate_storms.py): connect_storm.py and loadgen.py sending
tokens as usernames in turn and reusing a few client ids (the flappers), the gate's
refusals read back by reason, and the verdicts on the medians.

The CONNECTs are read by a tiny server on loopback in a thread that records each one
and answers CONNACK: no broker.
"""
import os
import struct
import sys
import tempfile

from twisted.trial import unittest

from tests.support.accept_server import serve

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import common  # noqa: E402
import connect_storm  # noqa: E402
import gate_storms  # noqa: E402
import loadgen  # noqa: E402
import storms  # noqa: E402


def connect_fields(packet):
    """(client id, username, password) of an MQTT 3.1.1 CONNECT with a 1-byte length."""
    flags, pos, out = packet[9], 12, []
    for present in (True, bool(flags & 0x80), bool(flags & 0x40)):
        if not present:
            out.append(None)
            continue
        n = struct.unpack("!H", packet[pos:pos + 2])[0]
        out.append(packet[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
    return tuple(out)


def recording_server(test):
    """A loopback port that answers every CONNECT with a CONNACK; the CONNECTs'
    (client id, username, password), in arrival order."""
    seen = []

    def record(conn):
        data = b""
        while len(data) < 2 or len(data) < 2 + data[1]:
            data += conn.recv(256)
        seen.append(connect_fields(data))
        conn.sendall(b"\x20\x02\x00\x00")
        conn.recv(16)
        conn.close()

    return serve(test, record), seen


def token_file(test, *tokens):
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(tokens) + "\n\n")
    test.addCleanup(os.unlink, path)
    return path


class StormTokensTests(unittest.TestCase):
    def test_tokens_in_turn_as_usernames_and_a_few_client_ids_reused(self):
        port, seen = recording_server(self)
        out = connect_storm.run(connect_storm.parse_args(
            ["--port", str(port), "--connects", "6", "--concurrency", "1", "--source-ips", "1",
             "--client-prefix", "flap", "--client-ids", "2",
             "--username-file", token_file(self, "tokA", "tokB", "tokC")]))
        self.assertEqual(out["connacks"], 6)
        self.assertEqual(seen, [("flap-0", "tokA", None), ("flap-1", "tokB", None),
                                ("flap-0", "tokC", None), ("flap-1", "tokA", None),
                                ("flap-0", "tokB", None), ("flap-1", "tokC", None)])

    def test_password_same_sends_the_token_twice(self):
        port, seen = recording_server(self)
        connect_storm.run(connect_storm.parse_args(
            ["--port", str(port), "--connects", "1", "--concurrency", "1", "--source-ips", "1",
             "--client-prefix", "c", "--password-same",
             "--username-file", token_file(self, "tokA")]))
        self.assertEqual(seen, [("c-0", "tokA", "tokA")])

    def test_loadgen_gives_each_connection_its_line(self):
        args = loadgen.parse_args(["--connections", "3", "--duration", "1", "--client-prefix",
                                   "g", "--username-file", token_file(self, "t0", "t1")])
        conns = loadgen.make_conns(args, range(3))
        self.assertEqual([connect_fields(c.connect_pkt)[1] for c in conns], ["t0", "t1", "t0"])

    def test_read_lines_skips_blank_ones(self):
        self.assertEqual(common.read_lines(token_file(self, " a ", "", "b")), ["a", "b"])


class GateReportTests(unittest.TestCase):
    def test_the_gates_refusals_by_reason_between_two_dumps(self):
        before = {"mqttd-master": {"edge_gate_refused{reason=bad token}": 3,
                                   "edge_refused{limit=limits.banned}": 1}}
        after = {"mqttd-master": {"edge_gate_refused{reason=bad token}": 10,
                                  "edge_gate_refused{reason=auth rate}": 4,
                                  "edge_refused{limit=limits.banned}": 9}}
        self.assertEqual(storms.refused_by_limit(before, after, "edge_gate_refused", "reason"),
                         {"bad token": 7, "auth rate": 4})

    def test_counter_growth_over_every_process(self):
        before = {"mqttd-master": {"gate_token_lookups": 5}}
        after = {"mqttd-master": {"gate_token_lookups": 7}, "mqttd-worker-0": {}}
        self.assertEqual(gate_storms.counter_deltas(before, after, ("gate_token_lookups",
                                                                    "edge_gate_lookups")),
                         {"gate_token_lookups": 2, "edge_gate_lookups": 0})
        self.assertIsNone(gate_storms.counter_deltas(None, after, ("x",)))

    def test_verdicts(self):
        def connect(rate, gen):
            return {"connacks_per_s": rate, "gen_cores": gen}

        def mixed(p99, missing=0):
            return {"p99_ms": p99, "durability": {"acked": 100, "missing": missing,
                                                  "duplicated": 0, "foreign": 0}}

        def verdicts(gate_rate, gen, calm, storm, missing=0):
            return [r[-1] for r in gate_storms.verdicts({
                ("connect", "mosquitto", "connect"): connect(10000.0, 0.3),
                ("connect", gate_storms.GATE, "connect"): connect(gate_rate, gen),
                ("mixed", gate_storms.GATE, "calm"): mixed(calm),
                ("mixed", gate_storms.GATE, "storm"): mixed(storm, missing)})]

        self.assertEqual(verdicts(5000.0, 0.3, 10.0, 20.0), ["PASS", "", "PASS", "PASS"])
        self.assertEqual(verdicts(4999.0, 0.3, 10.0, 20.1), ["FAIL", "", "FAIL", "PASS"])
        self.assertEqual(verdicts(4000.0, 0.95, 10.0, 5.0, 1), ["UNPROVEN", "", "PASS", "FAIL"])
