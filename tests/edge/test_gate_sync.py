"""The gate follows the store: bans loaded at start, every change applied within one
reload_interval (a change of accounts or tokens: caches dropped, live tokens looked up
again; of bans: the bans reloaded and the token caches kept) and the live connections
now refused or banned kicked; one poll at a time; a failing poll is logged once and
retried."""
from twisted.internet.defer import Deferred

from mqttd.codec.packets import CONNACK_ACCEPTED
from mqttd.edge.gate_sync import GateSync
from mqttd.store.gate_records import BanRecord, StoreVersions
from tests.support.gate import TOKEN, GateCase

OTHER = "tok-" + "b" * 40


class SyncCase(GateCase):
    flapping_options = None  # [flapping_detect] for the gate (None: off)

    def setUp(self):
        super().setUp()
        if self.flapping_options is not None:
            self.flapping_config(**self.flapping_options)
        self.gate_ = self.gate(allow_anonymous=True)
        self.sync = GateSync(self.clock, self.store, self.gate_, self.metrics, 0.5)
        self.addCleanup(self.sync.stop)

    def start(self):
        self.successResultOf(self.sync.start())

    def ban(self, kind, value, until=None):
        return BanRecord(kind, value, "operator", "test", self.clock.seconds(), until)


class StartTests(SyncCase):
    def test_bans_are_loaded_at_start(self):
        self.store.put_ban(self.ban("clientid", "bad"))
        self.start()
        self.assertEqual(self.connect(self.gate_, client_id="bad", username=None).reason,
                         "banned")
        self.assertEqual(self.sync.versions, self.store.current())
        self.assertEqual(self.metrics.edge_bans_active, 1)

    def test_polls_every_interval_and_reloads_only_on_a_change(self):
        self.start()
        self.assertEqual((self.store.calls["versions"], self.store.calls["bans"]), (1, 1))
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual((self.store.calls["versions"], self.store.calls["bans"]), (3, 1))
        self.store.put_ban(self.ban("clientid", "bad"))
        self.clock.advance(0.5)
        self.assertEqual((self.store.calls["versions"], self.store.calls["bans"]), (4, 2))
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="bans"), 2)
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="tokens"), 1)


class KickTests(SyncCase):
    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN, account="acme")
        self.store.put_token(OTHER, account="other")
        self.start()
        self.dev1 = self.connect(self.gate_, client_id="dev-1", username=TOKEN).ticket
        self.dev2 = self.connect(self.gate_, client_id="dev-2", username=OTHER).ticket

    def test_a_revoked_token_is_refused_at_once_and_its_connection_kicked(self):
        self.store.revoke(TOKEN)
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("dev-1", "token revoked")])
        self.assertEqual(self.store.calls["lookup_tokens"], 1)
        self.clock.advance(1.0)  # refused now (not from a stale cache)
        self.assertEqual(self.connect(self.gate_, client_id="dev-1").reason, "token revoked")
        self.assertEqual(self.metrics.value("edge_gate_kicked", reason="token revoked"), 1)

    def test_an_inactive_account_kicks_its_connections_only(self):
        self.store.disable_account("other")
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("dev-2", "account inactive")])

    def test_a_deleted_token_kicks(self):
        del self.store.tokens[TOKEN]
        self.store.counter += 1
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("dev-1", "bad token")])

    def test_a_new_ban_of_a_client_id_kicks_it(self):
        self.store.put_ban(self.ban("clientid", "dev-2"))
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("dev-2", "banned")])

    def test_a_new_ban_of_an_address_kicks_every_client_from_it(self):
        anon = self.connect(self.gate_, client_id="anon", username=None, host="10.0.0.9")
        self.assertEqual(anon.code, CONNACK_ACCEPTED)
        self.store.put_ban(self.ban("ip", "10.0.0.8/31"))
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("anon", "banned")])

    def test_a_kicked_connection_is_kicked_once_and_a_released_one_never(self):
        self.store.revoke(TOKEN)
        self.clock.advance(0.5)
        self.store.put_ban(self.ban("username", "whatever"))  # another change
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("dev-1", "token revoked")])
        self.dev2.release()
        self.store.disable_account("other")
        self.clock.advance(0.5)
        self.assertEqual(len(self.kicks), 1)

    def test_a_lower_quota_kicks_no_one_and_refuses_the_next_over_it(self):
        self.store.put_token(TOKEN, account="acme", max_connections=3)
        self.clock.advance(0.5)
        more = [self.connect(self.gate_, client_id=f"dev-{i}", username=TOKEN).ticket
                for i in (3, 4)]  # acme holds dev-1, dev-3, dev-4: its quota of 3
        self.store.put_token(TOKEN, account="acme", max_connections=1)  # accounts set
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [])  # the 3 stay, over the new quota
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 3)
        self.assertEqual(self.connect(self.gate_, client_id="dev-5").reason, "quota")
        more[0].release()  # 2 left: under the old quota, not the new one
        self.assertEqual(self.connect(self.gate_, client_id="dev-5").reason, "quota")
        line = self.logged("at the gate")[-1]
        self.assertIn("max_connections 1 of account acme", line)
        more[1].release()
        self.dev1.release()  # none left
        self.clock.advance(1.0)  # past the token's auth rate (4 attempts in a second)
        self.assertEqual(self.connect(self.gate_, client_id="dev-5").code, CONNACK_ACCEPTED)
        self.assertEqual(self.connect(self.gate_, client_id="dev-6").reason, "quota")

    def test_nothing_changed_nothing_kicked(self):
        for _ in range(10):
            self.clock.advance(0.5)
        self.assertEqual(self.kicks, [])
        self.assertEqual(self.store.calls["lookup_tokens"], 0)


BAD_TOKENS = [f"bad-token-{n:02d}-" + "x" * 20 for n in range(5)]


class BansKeepTheTokenCachesTests(SyncCase):
    """A ban, the flapping detector's or the operator's, reloads the bans and nothing
    else: known and unknown tokens stay cached and no live token is read again, so a
    storm of bad tokens beside a flapping storm reaches the store once per token."""

    flapping_options = {"enable": True, "max_count": 2, "window_time": 10.0,
                        "ban_time": 60.0}

    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN, account="acme")
        self.start()
        self.good = self.connect(self.gate_, client_id="good", username=TOKEN)
        for token in BAD_TOKENS:
            self.assertEqual(self.connect(self.gate_, client_id="b", username=token).reason,
                             "bad token")

    def flap(self, client_id):
        """Two connections of ``client_id`` that end: the second one bans it."""
        for _ in range(2):
            self.connect(self.gate_, client_id=client_id, username=None).ticket.release()

    def test_a_flapping_storm_leaves_bad_tokens_answered_from_memory(self):
        for n in range(16):  # 8 s: within the 10 s of the negative cache
            self.flap(f"flapper-{n}")
            self.clock.advance(0.5)
            for token in BAD_TOKENS:
                self.assertEqual(self.connect(self.gate_, client_id=f"b{n}",
                                              username=token).reason, "bad token")
            again = self.connect(self.gate_, client_id=f"good-{n}", username=TOKEN)
            self.assertEqual(again.code, CONNACK_ACCEPTED)
            again.ticket.release()
        self.assertEqual(self.store.calls["add_ban"], 16)
        self.assertEqual(dict(self.store.looked_up), dict.fromkeys(BAD_TOKENS + [TOKEN], 1))
        self.assertEqual(self.store.calls["lookup_tokens"], 0)
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="bans"), 17)
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="tokens"), 1)
        self.assertEqual(self.connect(self.gate_, client_id="flapper-3",
                                      username=None).reason, "banned")
        self.assertEqual(self.kicks, [])  # the good connection is no flapper

    def test_an_operators_ban_keeps_them_too_and_kicks_what_it_matches(self):
        self.store.put_ban(self.ban("clientid", "good"))
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("good", "banned")])
        self.assertEqual(self.connect(self.gate_, client_id="b",
                                      username=BAD_TOKENS[0]).reason, "bad token")
        self.assertEqual(self.store.looked_up[BAD_TOKENS[0]], 1)
        self.assertEqual(self.store.calls["lookup_tokens"], 0)

    def test_a_change_of_tokens_still_clears_both_caches_within_a_tick(self):
        self.store.put_token(BAD_TOKENS[0], account="acme")  # the bad token made now
        self.clock.advance(0.5)
        self.assertEqual(self.store.calls["lookup_tokens"], 1)  # the live TOKEN, again
        self.assertEqual(self.connect(self.gate_, client_id="new",
                                      username=BAD_TOKENS[0]).code, CONNACK_ACCEPTED)
        self.connect(self.gate_, client_id="good-2", username=TOKEN)
        self.assertEqual(self.store.looked_up[BAD_TOKENS[0]], 2)
        self.assertEqual(self.store.looked_up[TOKEN], 2)  # the known cache cleared too
        self.assertEqual(self.store.calls["bans"], 1)  # the bans were not read again

    def test_both_in_one_tick_apply_both(self):
        self.store.revoke(TOKEN)
        self.store.put_ban(self.ban("ip", "10.0.0.1"))
        self.clock.advance(0.5)
        self.assertEqual(self.kicks, [("good", "banned")])
        self.assertEqual((self.store.calls["bans"], self.store.calls["lookup_tokens"]), (2, 1))
        self.assertEqual(self.connect(self.gate_, client_id="other", host="10.0.0.2").reason,
                         "token revoked")


class OnePollTests(SyncCase):
    def test_a_slow_poll_is_never_doubled(self):
        slow = Deferred()
        self.store.versions = lambda: slow
        d = self.sync.start()
        self.clock.advance(5.0)
        self.assertNoResult(d)
        slow.callback(StoreVersions(7, 3))
        self.successResultOf(d)
        self.assertEqual(self.sync.versions, StoreVersions(7, 3))
        calls = []
        self.store.versions = lambda: calls.append(Deferred()) or calls[-1]
        self.clock.advance(0.5)
        self.clock.advance(5.0)
        self.assertEqual(len(calls), 1)
        calls[0].callback(StoreVersions(7, 3))


class FailureTests(SyncCase):
    def test_a_failing_poll_is_logged_once_and_retried(self):
        self.store.fail.add("versions")
        self.successResultOf(self.sync.start())
        for _ in range(4):
            self.clock.advance(0.5)
        self.assertEqual(self.metrics.edge_gate_poll_failures, 5)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.store.fail.clear()
        self.store.put_ban(self.ban("clientid", "bad"))
        self.clock.advance(0.5)
        self.assertEqual(self.sync.versions, self.store.current())
        self.assertEqual(len(self.logged("after {count} failed polls")), 1)
        self.assertEqual(self.connect(self.gate_, client_id="bad", username=None).reason,
                         "banned")

    def test_a_failed_reload_is_made_again_next_tick(self):
        self.start()
        self.store.fail.add("bans")
        self.store.put_ban(self.ban("clientid", "bad"))
        self.clock.advance(0.5)
        self.assertNotEqual(self.sync.versions, self.store.current())
        self.store.fail.clear()
        self.clock.advance(0.5)
        self.assertEqual(self.sync.versions, self.store.current())
        self.assertEqual(self.connect(self.gate_, client_id="bad", username=None).reason,
                         "banned")
        self.flushLoggedErrors()

    def test_stop_waits_for_the_poll_in_flight_and_schedules_no_more(self):
        slow = Deferred()
        self.store.versions = lambda: slow
        self.sync.start()
        stopped = self.sync.stop()
        self.assertNoResult(stopped)
        slow.callback(StoreVersions(3, 3))
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
