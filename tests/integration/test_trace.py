"""The per-client trace of the real appliance, read from its JSON-lines file.

A client traced with ``mqttd trace add`` connects, publishes QoS 1 and disconnects: the
file then holds, in order, its accept and auth result (the master's, in the tree), its
connect, a publish and an ack with its commit latency for each message (their keys the
rows' in SQLite), and its disconnect with the bytes and messages counted each way
(exact: the client is raw, so every byte it sent and got is known). An untraced client
beside it gets its connection events and no publish event. The same test runs on the
tree (``server.workers = 2``, both workers) and on the single process.
"""
import ast
import json
import os

from mqttd.edge.balancer import Balancer
from tests.integration.support.cli import cli_ok
from tests.integration.support.common import wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.manhole import manhole_session, manhole_setup
from tests.integration.support.raw_client import (
    DISCONNECT, PacketType, connect_packet, publish_packet)
from tests.integration.support.testcase import BrokerTestCase

_CONFIG = """
[auth]
allow_anonymous = true
[[auth.users]]
username = "alice"
password = "alice-secret"
[manage]
trace_file = "trace.jsonl"
trace_poll_interval = 0.1
[server]
workers = {workers}
"""
MESSAGES = 3


def _events(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]  # every line whole: json.loads would fail


class _TraceCase:
    """The trace file and the clients every trace test drives."""

    workers = 0

    def setUp(self):
        super().setUp()
        self.trace_path = os.path.join(self.broker.workdir, "trace.jsonl")

    def events_of(self, client_id):
        return [e for e in _events(self.trace_path) if e["client_id"] == client_id]

    def wait_rules_applied(self, count):
        """Until every broker process (each worker of the tree) has ``count`` rules."""
        line = f"trace: {count} rule(s) in force"
        lines = ([f"[mqttd-worker-{slot}] {line}" for slot in range(1, self.workers + 1)]
                 if self.workers else [line])
        wait_for(lambda: all(wanted in self.broker.output() for wanted in lines),
                 timeout=10, message=f"{lines} in the log", context=self.context)

    def client_id_on(self, slot, prefix):
        homes = Balancer(range(1, self.workers + 1)) if self.workers else None
        n = 0
        while True:
            n += 1
            client_id = f"{prefix}-{n}-{os.getpid() % 10000}"
            if homes is None or homes.home(client_id) == slot:
                return client_id

    def run_client(self, client_id, username=None, password=None):
        """CONNECT, MESSAGES QoS 1 publishes (each acked), DISCONNECT; (local port,
        bytes sent, bytes received, payloads)."""
        raw = self.raw()
        sent = connect_packet(client_id=client_id, username=username, password=password)
        raw.send(sent)
        ptype, _, body = raw.read_packet()
        self.assertEqual((ptype, body), (PacketType.CONNACK, b"\x00\x00"))
        received = 4
        payloads = []
        for i in range(1, MESSAGES + 1):
            payload = os.urandom(10 + i)
            payloads.append(payload)
            packet = publish_packet(f"t/{client_id}/{i}", payload, qos=1, packet_id=i)
            raw.send(packet)
            sent += packet
            ptype, _, body = raw.read_packet()
            self.assertEqual((ptype, body), (PacketType.PUBACK, i.to_bytes(2, "big")))
            received += 4
        raw.send(DISCONNECT)
        raw.wait_closed()
        return raw.sock.getsockname()[1], len(sent) + len(DISCONNECT), received, payloads


class _TraceTests(_TraceCase):
    def test_a_traced_client_and_an_untraced_one(self):
        traced = self.client_id_on(1, "traced")
        other = self.client_id_on(self.workers, "other")  # the other worker, in the tree
        cli_ok(self, self.broker, "trace", "add", f"client_id={traced}")
        self.wait_rules_applied(1)
        port, sent, received, payloads = self.run_client(traced, "alice", "alice-secret")
        self.run_client(other)
        wait_for(lambda: any(e["event"] == "disconnect" for e in self.events_of(other))
                 and any(e["event"] == "disconnect" for e in self.events_of(traced)),
                 message="both disconnects in the trace file", context=self.context)

        events = self.events_of(traced)
        peer = f"127.0.0.1:{port}"
        accept = [e for e in _events(self.trace_path)
                  if e["event"] == "accept" and e["peer"] == peer]
        self.assertEqual(len(accept), 1)
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds, ["auth", "connect"] + ["publish", "ack"] * MESSAGES
                         + ["disconnect"], events)
        where = "mqttd-master" if self.workers else "mqttd"
        worker = "mqttd-worker-1" if self.workers else "mqttd"
        self.assertEqual(accept[0]["process"], where)
        self.assertEqual([e["process"] for e in events],
                         [where] + [worker] * (len(events) - 1))
        for event in events:
            self.assertEqual((event["peer"], event["username"], event["account"]),
                             (peer, "alice", None), event)
            self.assertNotIn("token", event)
        auth, connect = events[0], events[1]
        self.assertEqual((auth["result"], auth["method"], auth["code"]),
                         ("accepted", "user", 0))
        self.assertEqual((connect["clean"], connect["present"]), (True, False))

        rows = {key: payload for _, payload, key, _, _ in stored_messages(self.broker.db_path)}
        publishes = [e for e in events if e["event"] == "publish"]
        acks = [e for e in events if e["event"] == "ack"]
        for i, (publish, ack, payload) in enumerate(zip(publishes, acks, payloads), 1):
            self.assertEqual((publish["topic"], publish["qos"], publish["packet_id"],
                              publish["bytes"], publish["retain"]),
                             (f"t/{traced}/{i}", 1, i, len(payload), False))
            self.assertEqual(bytes(rows[publish["key"]]), payload)
            self.assertEqual((ack["ack"], ack["packet_id"], ack["key"]),
                             ("puback", i, publish["key"]))
            self.assertGreater(ack["commit_latency_ms"], 0)
            self.assertGreaterEqual(ack["ts"], publish["ts"])

        disconnect = events[-1]
        self.assertEqual((disconnect["reason"], disconnect["bytes_in"],
                          disconnect["bytes_out"], disconnect["messages_in"],
                          disconnect["messages_out"]),
                         ("client disconnect", sent, received, MESSAGES, 0))
        self.assertGreater(disconnect["duration_s"], 0)

        untraced = self.events_of(other)
        self.assertEqual([e["event"] for e in untraced], ["auth", "connect", "disconnect"])
        self.assertEqual((untraced[-1]["messages_in"], untraced[-1]["bytes_out"]),
                         (MESSAGES, received))
        self.assertEqual(untraced[1]["process"],
                         f"mqttd-worker-{self.workers}" if self.workers else "mqttd")

    def test_a_rule_reaches_a_client_already_connected_and_its_removal_too(self):
        client_id = self.client_id_on(1, "live")
        client = self.client(client_id)
        client.publish("live/1", b"before", qos=1)
        cli_ok(self, self.broker, "trace", "add", f"client_id={client_id}")
        self.wait_rules_applied(1)
        client.publish("live/2", b"during", qos=1)
        cli_ok(self, self.broker, "trace", "rm", f"client_id={client_id}")
        self.wait_rules_applied(0)
        client.publish("live/3", b"after", qos=1)
        client.disconnect()
        wait_for(lambda: any(e["event"] == "disconnect" for e in self.events_of(client_id)),
                 message="the disconnect in the trace file", context=self.context)
        topics = [e["topic"] for e in self.events_of(client_id) if e["event"] == "publish"]
        self.assertEqual(topics, ["live/2"])
        self.assertEqual(self.events_of(client_id)[-1]["messages_in"], 3)

    def test_a_refused_token_is_traced_by_its_prefix_never_the_token(self):
        token = "tok-" + os.urandom(16).hex()
        raw = self.raw()
        raw.send(connect_packet(client_id="refused-1", username=token))
        ptype, _, body = raw.read_packet()
        self.assertEqual((ptype, body[1]), (PacketType.CONNACK, 5))
        auth = wait_for(lambda: [e for e in self.events_of("refused-1") if e["event"] == "auth"],
                        message="the auth event", context=self.context)[0]
        self.assertEqual((auth["result"], auth["method"], auth["reason"], auth["token"],
                          auth["username"]),
                         ("refused", "token", "bad token", token[:6], None))
        self.assertEqual(auth["limit"], "accounts and tokens")
        with open(self.trace_path, encoding="utf-8") as f:
            self.assertNotIn(token, f.read())


class TreeTraceTests(_TraceTests, BrokerTestCase):
    workers = 2
    config = _CONFIG.format(workers=2)


class SingleProcessTraceTests(_TraceTests, BrokerTestCase):
    workers = 0
    config = _CONFIG.format(workers=0)


class _ManholeTraceTests(_TraceCase):
    """The manhole's trace helpers on the real appliance: a rule made there, and
    ``trace(client_id)`` showing the window of every process (the master's accept and
    auth, the worker's connect to disconnect), asked over the workers' channels."""

    def setUp(self):
        section, _ = manhole_setup(self)
        self.config = _CONFIG.format(workers=self.workers).replace(
            "[manage]\n", section, 1)
        super().setUp()

    def test_trace_add_then_trace_shows_the_whole_window(self):
        client_id = self.client_id_on(1, "window")
        manhole = manhole_session(self, self.broker)
        manhole.run(f"trace_add(client_id={client_id!r})")
        self.assertIn(client_id, manhole.run("trace_list()"))
        self.wait_rules_applied(1)
        self.run_client(client_id, "alice", "alice-secret")
        wait_for(lambda: any(e["event"] == "disconnect" for e in self.events_of(client_id)),
                 message="the disconnect in the trace file", context=self.context)
        manhole.run(f"trace({client_id!r})")
        seen = ast.literal_eval(manhole.run("[(e['event'], e['process']) for e in _]"))
        where = "mqttd-master" if self.workers else "mqttd"
        worker = "mqttd-worker-1" if self.workers else "mqttd"
        self.assertEqual(seen, [("accept", where), ("auth", where), ("connect", worker)]
                         + [("publish", worker), ("ack", worker)] * MESSAGES
                         + [("disconnect", worker)])
        manhole.run(f"trace_rm(client_id={client_id!r})")
        self.assertEqual(manhole.run("_"), "True")
        self.wait_rules_applied(0)


class TreeManholeTraceTests(_ManholeTraceTests, BrokerTestCase):
    workers = 2


class SingleProcessManholeTraceTests(_ManholeTraceTests, BrokerTestCase):
    workers = 0
