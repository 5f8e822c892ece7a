"""The per-client trace through the real protocol and broker, on Clock and StringTransport:
the events a connection writes, their fields, its counters, and the switch that traces
publishes (on for a rule's clients, live ones too; off: an attribute test, no event)."""
import json

from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec import Connack, Connect, Disconnect, Puback, Subscribe, encode
from mqttd.config import AuthConfig, User
from mqttd.manage.trace_window import RecentEvents
from mqttd.manage.tracer import (
    MAX_FIELD, MAX_ITEMS, Anonymous, Tracer, build_event, clip, limit_of)
from mqttd.metrics import Metrics
from tests.support.broker import Client, Harness, ManualStore, pub

_USERS = AuthConfig(allow_anonymous=True, users=(User("alice", "pw"),))


class TracedHarness(Harness):
    """A Harness whose broker traces into ``self.events`` (the records, in order)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("authenticator", StaticAuthenticator(_USERS))
        super().__init__(**kwargs)
        self.events = []
        self.metrics = Metrics()
        self.window = RecentEvents(100, 1 << 20, 16384, self.metrics)
        self.tracer = Tracer(self.clock, "mqttd", [lambda event: self.events.append(
            event["trace"])], self.window, ["alice"], self.metrics, accepts_here=True)
        self.broker.tracer = self.tracer

    def of(self, client_id, kind=None):
        return [e for e in self.events if e["client_id"] == client_id
                and (kind is None or e["event"] == kind)]


class EventBuilderTests(unittest.TestCase):
    def test_who_and_what_in_one_flat_record(self):
        who = Anonymous("10.0.0.1:5000")
        record = build_event(12.5, "mqttd-worker-1", "refused", who,
                             {"limit": "limits.max_conn_per_ip", "reason": "x"})
        self.assertEqual(record, {
            "ts": 12.5, "event": "refused", "process": "mqttd-worker-1", "client_id": None,
            "peer": "10.0.0.1:5000", "username": None, "account": None,
            "limit": "limits.max_conn_per_ip", "reason": "x"})
        self.assertEqual(json.loads(json.dumps(record)), record)

    def test_long_strings_and_lists_are_clipped(self):
        who = Anonymous(None)
        who_long = type("W", (), {"client_id": "c" * 70000, "peer": None, "username": "u",
                                  "account": None, "token": None})()
        record = build_event(0, "p", "subscribe", who_long,
                             {"filters": [f"t/{i}/" + "x" * 1000 for i in range(40)]})
        self.assertEqual(len(record["client_id"]), MAX_FIELD + 3)
        self.assertEqual(len(record["filters"]), MAX_ITEMS)
        self.assertEqual(record["filters_count"], 40)
        self.assertTrue(all(len(f) <= MAX_FIELD + 3 for f in record["filters"]))
        self.assertLess(len(json.dumps(record)), 6000)
        self.assertEqual(clip("short"), "short")
        self.assertIsNone(build_event(0, "p", "x", who, {})["client_id"])

    def test_a_token_is_shown_by_its_prefix_only(self):
        tracer = Tracer(None, "p", [], None, ["alice"], Metrics())
        self.assertEqual(tracer.name_of("alice"), ("alice", None, "user"))
        self.assertEqual(tracer.name_of(None), (None, None, "anonymous"))
        self.assertEqual(tracer.name_of("SECRETTOKEN123"), (None, "SECRET", "token"))

    def test_limits_named_for_reasons_that_name_none(self):
        self.assertEqual(limit_of("partial input budget"), "broker.max_partial_bytes")
        self.assertEqual(limit_of("store failed", "ack timeout"), "webhook.ack_timeout")
        self.assertIsNone(limit_of("client disconnect"))


class ConnectionEventTests(unittest.TestCase):
    def test_connect_publish_ack_disconnect_with_counters_and_commit_latency(self):
        store = ManualStore()
        h = TracedHarness(store=store)
        h.tracer.set_rules([("client_id", "dev")])
        c = Client(h)
        self.assertEqual(c.connect("dev", username="alice", password=b"pw"),
                         Connack(False, 0))
        c.send(pub("t/1", b"hello", qos=1, pid=7), bytewise=True)
        h.clock.advance(0.25)
        store.succeed(0)
        self.assertEqual(c.received(), [Puback(7)])
        c.send(Subscribe(2, (("a/#", 1), ("$a/x", 0))))
        h.clock.advance(1.0)
        c.disconnect()
        kinds = [e["event"] for e in h.of("dev")]
        self.assertEqual(kinds, ["auth", "connect", "publish", "ack", "subscribe",
                                 "disconnect"])
        accept = h.events[0]
        self.assertEqual((accept["event"], accept["client_id"]), ("accept", None))
        peer = accept["peer"]
        self.assertTrue(peer.startswith("192.0.2.7:"))
        for event in h.of("dev"):
            self.assertEqual((event["peer"], event["username"], event["process"]),
                             (peer, "alice", "mqttd"))
        auth, connect, publish, ack, subscribe, disconnect = h.of("dev")
        self.assertEqual((auth["result"], auth["method"]), ("accepted", "user"))
        self.assertEqual((connect["clean"], connect["keepalive"], connect["present"]),
                         (True, 0, False))
        self.assertEqual((publish["topic"], publish["qos"], publish["packet_id"],
                          publish["bytes"]), ("t/1", 1, 7, 5))
        self.assertEqual(publish["key"], store.messages[0].key)
        self.assertEqual((ack["packet_id"], ack["key"], ack["commit_latency_ms"]),
                         (7, publish["key"], 250.0))
        self.assertEqual(subscribe["filters"], ["a/# q1", "$a/x q0"])
        self.assertEqual(subscribe["granted"], [1, 0x80])  # $a/ is the accounts'
        self.assertEqual(disconnect["reason"], "client disconnect")
        self.assertEqual(disconnect["duration_s"], 1.25)
        self.assertEqual((disconnect["messages_in"], disconnect["messages_out"]), (1, 0))
        # CONNACK 4 + PUBACK 4 + SUBACK 2+2+2 bytes went out; in: what the client sent.
        self.assertEqual(disconnect["bytes_out"], 4 + 4 + 6)
        sent = (_connect("dev", username="alice", password=b"pw"),
                pub("t/1", b"hello", qos=1, pid=7), Subscribe(2, (("a/#", 1), ("$a/x", 0))),
                Disconnect())
        self.assertEqual(disconnect["bytes_in"], sum(len(encode(p)) for p in sent))
        self.assertEqual(h.metrics.trace_events["publish"], 1)

    def test_bytes_in_are_every_byte_read_and_messages_out_every_delivery(self):
        h = TracedHarness()
        sub = Client(h)
        sub.connect("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        p = Client(h)
        p.connect("pub")
        data = pub("t", b"x" * 20)
        for _ in range(3):
            p.send(data)
        self.assertEqual(len(sub.received()), 3)
        sub.disconnect()
        p.disconnect()
        (out,) = h.of("sub", "disconnect")
        (inn,) = h.of("pub", "disconnect")
        self.assertEqual(out["messages_out"], 3)
        self.assertEqual(out["bytes_out"], 4 + 5 + 3 * (2 + 3 + 20))  # CONNACK, SUBACK, 3x
        self.assertEqual(inn["messages_in"], 3)
        # CONNECT ("pub", keepalive 0, MQTT 3.1.1: 2 + 10 + 5 bytes), 3 PUBLISH, DISCONNECT.
        self.assertEqual(inn["bytes_in"], 17 + 3 * 25 + 2)
        self.assertEqual(h.of("pub", "publish"), [])  # untraced: no publish event

    def test_refusals_name_what_refused(self):
        h = TracedHarness(max_clientid_len=5)
        Client(h).send(_connect("abcdefgh"))
        refused = [e for e in h.events if e["event"] == "refused"]
        self.assertEqual(len(refused), 1)
        self.assertEqual((refused[0]["reason"], refused[0]["limit"], refused[0]["code"]),
                         ("client id too long", "broker.max_clientid_len", 2))
        self.assertIsNone(refused[0]["client_id"])  # a refused id is not written
        c = Client(h)
        c.send(_connect("dev", username="alice", password=b"wrong"))
        (auth,) = h.of("dev", "auth")
        self.assertEqual((auth["result"], auth["code"], auth["reason"]),
                         ("refused", 4, "bad credentials"))

    def test_a_timeout_close_names_its_key(self):
        h = TracedHarness(idle_timeout=5.0)
        c = Client(h)
        h.clock.advance(5.0)
        self.assertTrue(c.closed)
        c.lose()
        (disconnect,) = [e for e in h.events if e["event"] == "disconnect"]
        self.assertEqual((disconnect["reason"], disconnect["limit"], disconnect["duration_s"]),
                         ("connect timeout", "broker.idle_timeout", 5.0))


class SwitchTests(unittest.TestCase):
    def publish_topics(self, h, client_id):
        return [e["topic"] for e in h.of(client_id, "publish")]

    def test_off_by_default_on_by_client_id_username_or_ip(self):
        h = TracedHarness()
        h.tracer.set_rules([("username", "alice"), ("ip", "198.51.100.0/24")])
        a = Client(h)
        a.connect("a", username="alice", password=b"pw")
        b = Client(h)
        b.connect("b")
        n = Client(h, address="198.51.100.9")
        n.connect("n")
        for client in (a, b, n):
            client.send(pub("t/x"))
        self.assertEqual(self.publish_topics(h, "a"), ["t/x"])
        self.assertEqual(self.publish_topics(h, "b"), [])
        self.assertEqual(self.publish_topics(h, "n"), ["t/x"])
        self.assertEqual([e["event"] for e in h.of("b")], ["auth", "connect"])

    def test_a_rule_reaches_a_live_client_and_its_removal_too(self):
        h = TracedHarness()
        c = h.client("dev")
        c.send(pub("t/1"))
        h.tracer.set_rules([("client_id", "dev")])
        c.send(pub("t/2"))
        h.tracer.set_rules([])
        c.send(pub("t/3"))
        self.assertEqual(self.publish_topics(h, "dev"), ["t/2"])

    def test_a_token_user_is_matched_by_its_prefix(self):
        class TokenAuth:
            def authenticate(self, client_id, username, password, peer=None):
                return 0
        h = TracedHarness(authenticator=TokenAuth())
        h.tracer.set_rules([("username", "abcdef")])
        c = Client(h)
        c.connect("dev", username="abcdefSECRET")
        c.send(pub("t"))
        (publish,) = h.of("dev", "publish")
        self.assertEqual((publish["username"], publish["token"]), (None, "abcdef"))
        self.assertNotIn("abcdefSECRET", json.dumps(h.events))

    def test_with_the_trace_off_a_connection_has_no_trace(self):
        h = Harness()
        c = h.client("dev")
        self.assertIsNone(c.protocol.trace)
        self.assertIs(c.protocol.transport, c.transport)  # no counting transport either

    def test_the_window_answers_for_a_client_with_its_accept(self):
        h = TracedHarness()
        h.client("dev").disconnect()
        self.assertEqual([e["event"] for e in h.tracer.recent("dev")],
                         ["accept", "auth", "connect", "disconnect"])


def _connect(client_id, username=None, password=None):
    return Connect(client_id, True, 0, username, password)
