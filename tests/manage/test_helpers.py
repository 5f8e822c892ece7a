"""The manhole's helpers, each on an appliance on a Clock (``ApplianceCase``): what they
answer, what they change, and how a bad argument is told."""
from collections import Counter

from twisted.internet.defer import fail, succeed

from mqttd.manage.helpers import HELPERS, Clients, HelperError, Later, Report, namespace
from mqttd.store.accounts import AccountRecord, AccountsError
from mqttd.store.gate_records import BanRecord, token_hash
from tests.support.manage import ApplianceCase


class HelperTests(ApplianceCase):
    def setUp(self):
        super().setUp()
        self.ns = namespace(self.view, "admin")

    def answer(self, later):
        """The value a helper that answers ``Later`` came to."""
        self.assertIsInstance(later, Later)
        return self.successResultOf(later.deferred)

    def test_a_later_answer_cannot_be_iterated_while_it_waits(self):
        later = self.ns["clients"]()
        for attempt in (list, dict, len, lambda value: value["clients"]):
            with self.assertRaises(HelperError) as caught:
                attempt(later)
            self.assertIn("clients() answers later", str(caught.exception))

    def test_help_lists_every_helper_with_its_signature(self):
        text = repr(self.ns["help"]())
        for name in HELPERS:
            self.assertIn(f"  {name}(", text)
        self.assertIn("clients(ip=None, account=None, client_id=None, limit=100)", text)
        self.assertNotIn("``", text)
        self.assertEqual(sorted(self.ns), sorted(HELPERS))

    def test_stats_sums_the_tree_and_filters_by_prefix(self):
        self.metrics.edge_admitted = 3
        self.report_child("mqttd-worker-1", mqtt_publish_received=5)
        self.report_child("mqttd-worker-2", mqtt_publish_received=7)
        stats = self.ns["stats"]()
        self.assertEqual(stats["mqtt_publish_received"], 12)
        self.assertEqual(stats["edge_admitted"], 3)
        self.assertEqual(stats["mqtt_publish_received_by_process{process=mqttd-worker-2}"], 7)
        self.assertEqual(set(self.ns["stats"]("edge_")), {"edge_admitted"})
        self.assertNotIn("mqtt_dropped", stats)  # zero series are left out

    def test_clients_lists_the_brokers_connections_filtered(self):
        self.harness.client("dev-1")
        self.harness.client("dev-2", username="alice", password=b"secret")
        self.harness.client("other")
        answer = self.answer(self.ns["clients"](client_id="dev-*"))
        self.assertIsInstance(answer, Clients)
        self.assertEqual([c["client_id"] for c in answer["clients"]], ["dev-1", "dev-2"])
        self.assertEqual(answer["matched"], 2)
        self.assertEqual(answer["clients"][1]["username"], "alice")
        self.assertEqual(answer["clients"][0]["process"], "mqttd-worker-1")
        self.assertIn("2 shown of 2 matched", repr(answer))
        self.assertEqual(self.answer(self.ns["clients"](ip="10.0.0.0/8"))["matched"], 0)
        self.assertEqual(
            self.answer(self.ns["clients"](ip="192.0.2.0/24"))["matched"], 3)
        limited = self.answer(self.ns["clients"](limit=1))
        self.assertEqual((len(limited["clients"]), limited["matched"]), (1, 3))

    def test_clients_refuses_what_cannot_match(self):
        with self.assertRaises(HelperError):
            self.ns["clients"](ip="not an address")
        with self.assertRaises(HelperError):
            self.ns["clients"](limit=100_000)
        with self.assertRaises(HelperError):
            self.ns["clients"](account=3)

    def test_kick_goes_through_the_gate_to_the_owner_of_the_connection(self):
        self.admit("10.0.0.1", "dev-1")
        self.admit("10.0.0.2", "dev-2")
        kicked = self.ns["kick"]("dev-1")
        self.assertEqual(kicked, [{"client_id": "dev-1", "account": None, "peer": "10.0.0.1"}])
        self.assertEqual(self.kicks, [("dev-1", "manhole", None)])
        self.assertEqual(self.metrics.edge_gate_kicked["manhole"], 1)
        self.assertEqual(self.ns["kick"]("dev-1"), [])  # asked once already
        self.assertEqual(self.ns["kick"]("nobody"), [])
        self.assertEqual(self.ns["kick"]("dev-2", account="acme"), [])  # not in that account
        self.assertEqual(len(self.kicks), 1)
        audit = [e for e in self.events if e.get("log_format", "").startswith("manhole {who}")]
        self.assertEqual([(e["who"], e["client_id"], e["count"]) for e in audit][0],
                         ("admin", "dev-1", 1))

    def test_ban_is_in_force_at_once_stored_and_kicks_what_it_matches(self):
        self.admit("10.0.0.9", "dev-9")
        shown = self.ns["ban"](ip="10.0.0.9", seconds=60, reason="storm")
        self.assertEqual((shown["kind"], shown["value"], shown["who"], shown["until"]),
                         ("ip", "10.0.0.9", "manhole admin", self.clock.seconds() + 60))
        self.assertIsNotNone(self.door.admit("10.0.0.9"))  # refused at accept now
        self.assertEqual(self.kicks, [("dev-9", "banned", None)])
        self.assertIn(("ip", "10.0.0.9"), self.store.ban_records)
        self.assertEqual([b["value"] for b in self.ns["bans"]()], ["10.0.0.9"])
        self.clock.advance(61)
        self.assertEqual(self.ns["bans"](), [])  # lapsed by the clock

    def test_a_token_is_banned_by_its_hash_never_stored_shown_or_logged_whole(self):
        token = "0zoub16X3g8XOOTbWiaW-XcJdnGPnqcU"
        shown = self.ns["ban"](username=token, reason="stolen")
        self.assertEqual((shown["kind"], shown["value"]), ("username", token_hash(token)))
        self.assertEqual(list(self.store.ban_records), [("username", token_hash(token))])
        self.assertEqual(
            self.successResultOf(self.gate.authenticate("dev", token, None)).reason, "banned")
        self.assertEqual([b["value"] for b in self.ns["bans"]()], [token_hash(token)])
        answer = self.answer(self.ns["unban"](username=token))
        self.assertEqual((answer["value"], answer["removed"]), (token_hash(token), True))
        self.assertNotIn(token, repr(self.events))

    def test_a_static_users_ban_holds_its_name(self):
        self.ns["ban"](username="alice")
        self.assertEqual(list(self.store.ban_records), [("username", "alice")])

    def test_ban_names_exactly_one_valid_target(self):
        for kwargs in ({}, {"ip": "10.0.0.1", "client_id": "x"}, {"ip": "300.1.1.1"},
                       {"client_id": ""}, {"client_id": "x", "seconds": 0},
                       {"client_id": "x", "reason": 5}):
            with self.assertRaises(HelperError, msg=kwargs):
                self.ns["ban"](**kwargs)
        self.assertEqual(self.store.ban_records, {})

    def test_unban_removes_the_stored_ban(self):
        self.store.put_ban(BanRecord("clientid", "dev-1", "op", "", self.clock.seconds()))
        answer = self.answer(self.ns["unban"](client_id="dev-1"))
        self.assertEqual((answer["removed"], answer["lifts"]),
                         (True, "within auth.reload_interval (0.5 s)"))
        self.assertFalse(self.answer(self.ns["unban"](client_id="dev-1"))["removed"])

    def test_accounts_with_the_client_ids_they_have_connected(self):
        self.store.account_records = [AccountRecord("acme", True, 10, None, None, 0, 0),
                                      AccountRecord("zeta", False, None, 3, "L", 0, 0)]
        self.gate.tickets.issue("d1", None, "10.0.0.1", "acme")
        self.gate.tickets.issue("d2", None, "10.0.0.1", "acme")
        answer = self.answer(self.ns["accounts"]())
        self.assertEqual([(a["name"], a["connected"], a["max_connections"]) for a in answer],
                         [("acme", 2, 10), ("zeta", 0, None)])

    def test_top_ips_by_connections_and_by_connects(self):
        for _ in range(3):
            self.admit("10.0.0.1")
        for _ in range(10):
            self.door.release("10.0.0.2") if self.door.admit("10.0.0.2") is None else None
        top = self.ns["top_ips"]()
        self.assertEqual([(r["ip"], r["open"]) for r in top["by_connections"]],
                         [("10.0.0.1", 3)])
        self.assertEqual([(r["ip"], r["connects"]) for r in top["by_connect_rate"]],
                         [("10.0.0.2", 10), ("10.0.0.1", 3)])
        with self.assertRaises(HelperError):
            self.ns["top_ips"](0)

    def test_webhook_tells_its_figures_and_settings(self):
        self.report_child("mqttd-worker-1", webhook_retried={"timeout": 4}, webhook_pending=2)
        section = self.ns["webhook"]()
        self.assertEqual(section["retries"]["total"], 4)
        self.assertEqual(section["figures"]["webhook_pending"], 2)
        self.assertEqual(section["latency"]["p50"], None)  # no request answered yet
        self.assertEqual(section["pool_size"], 1)

    def test_report_prints_as_the_cli_does(self):
        self.admit("10.0.0.7")
        report = self.ns["report"]()
        self.assertIsInstance(report, Report)
        self.assertEqual(report["top_ips"]["by_connections"][0]["ip"], "10.0.0.7")
        self.assertTrue(repr(report).startswith("mqttd report at "))

    def test_trace_says_when_there_is_no_trace_window(self):
        self.assertEqual(repr(self.ns["trace"]("dev-1")), "trace not enabled")

    def test_trace_rules_go_to_the_trace_and_are_refused_while_it_is_off(self):
        with self.assertRaises(HelperError) as caught:
            self.ns["trace_add"](client_id="dev")
        self.assertIn("trace not enabled", str(caught.exception))
        calls = []

        class Trace:
            def trace_add(self, **named):
                calls.append(("add", named))
                if named.get("ip"):
                    return fail(AccountsError("at most 1000 trace rules"))
                return succeed({"kind": "client_id", "value": "dev"})

            def trace_rm(self, **named):
                calls.append(("rm", named))
                return succeed(True)

            def trace_list(self):
                return [{"kind": "client_id", "value": "dev"}]
        self.view.trace = Trace()
        ns = namespace(self.view, "admin")
        self.assertEqual(self.answer(ns["trace_add"](client_id="dev", seconds=60)),
                         {"kind": "client_id", "value": "dev"})
        self.assertEqual(calls, [("add", {"client_id": "dev", "seconds": 60,
                                          "who": "manhole admin"})])
        for bad in ({"client_id": "a", "ip": "10.0.0.1"}, {"client_id": "a", "seconds": 0},
                    {"ip": "nope"}):
            with self.assertRaises(HelperError, msg=bad):
                ns["trace_add"](**bad)
        refused = self.failureResultOf(ns["trace_add"](ip="10.0.0.0/8").deferred, HelperError)
        self.assertIn("at most 1000", str(refused.value))
        self.assertIs(self.answer(ns["trace_rm"](client_id="dev")), True)
        self.assertEqual(ns["trace_list"](), [{"kind": "client_id", "value": "dev"}])

    def test_trace_reads_the_window_it_is_given(self):
        calls = Counter()

        def recent(client_id):
            calls[client_id] += 1
            return [{"event": "connect", "client_id": client_id}]
        self.view.recent_events = recent
        events = self.answer(namespace(self.view, "admin")["trace"]("dev-1"))
        self.assertEqual(events, [{"event": "connect", "client_id": "dev-1"}])
        self.assertEqual(calls, {"dev-1": 1})
