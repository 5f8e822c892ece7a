"""The gate's order of questions and the answer of each: bans first, then anonymous
and static users (as StaticAuthenticator), then tokens; every refusal counted by its
reason and logged without the token; every acceptance holds a ticket."""
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_NOT_AUTHORIZED,
)
from mqttd.edge.gate import peer_host
from mqttd.store.gate_records import BanRecord, token_hash
from tests.support.gate import TOKEN, GateCase, peer


def ban(kind, value, until=None):
    return BanRecord(kind, value, "operator", "test", 0.0, until)


class StaticTests(GateCase):
    def test_anonymous_follows_allow_anonymous(self):
        self.assertEqual(self.connect(self.gate(), username=None).code, CONNACK_NOT_AUTHORIZED)
        self.assertEqual(self.connect(self.gate(), username=None).reason, "not authorized")
        result = self.connect(self.gate(allow_anonymous=True), username=None)
        self.assertEqual((result.code, result.account), (CONNACK_ACCEPTED, None))
        self.assertEqual(result.ticket.client_id, "c1")
        self.assertEqual(self.metrics.value("edge_gate_accepted", method="anonymous"), 1)
        self.assertEqual(self.refused("not authorized"), 2)

    def test_a_static_user_needs_its_password_and_is_never_looked_up(self):
        gate = self.gate()
        ok = self.connect(gate, username="alice", password=b"secret")
        self.assertEqual((ok.code, ok.account, ok.ticket.username), (0, None, "alice"))
        for password in (b"wrong", None, b""):
            result = self.connect(gate, username="alice", password=password)
            self.assertEqual((result.code, result.reason),
                             (CONNACK_BAD_CREDENTIALS, "bad credentials"))
        self.assertEqual(self.store.calls["lookup_token"], 0)
        self.assertEqual(self.metrics.value("edge_gate_accepted", method="user"), 1)
        self.assertEqual(self.refused("bad credentials"), 3)

    def test_a_static_user_is_not_rate_limited_per_token(self):
        gate = self.gate()
        self.assertEqual(self.codes(gate, 10, username="alice", password=b"secret"),
                         [(0, None)] * 10)


class TokenTests(GateCase):
    def test_an_active_token_is_accepted_with_its_account_and_a_ticket(self):
        self.store.put_token(TOKEN, account="acme")
        result = self.connect(self.gate(), client_id="dev-1")
        self.assertEqual((result.code, result.account), (CONNACK_ACCEPTED, "acme"))
        ticket = result.ticket
        self.assertEqual((ticket.client_id, ticket.account, ticket.host, ticket.prefix,
                          ticket.token_hash), ("dev-1", "acme", "10.0.0.1", TOKEN[:6],
                                               token_hash(TOKEN)))
        self.assertEqual(self.metrics.value("edge_gate_accepted", method="token"), 1)

    def test_unknown_revoked_and_inactive_are_refused_with_their_reasons(self):
        self.store.put_token("revoked-token", token_active=False)
        self.store.put_token("inactive-acct", account_active=False)
        gate = self.gate()
        for token, reason in (("no-such-token", "bad token"), ("revoked-token", "token revoked"),
                              ("inactive-acct", "account inactive")):
            result = self.connect(gate, username=token)
            self.assertEqual((result.code, result.reason, result.ticket),
                             (CONNACK_NOT_AUTHORIZED, reason, None))
            self.assertEqual(self.refused(reason), 1)

    def test_require_password_wants_the_token_in_both_fields(self):
        self.store.put_token(TOKEN)
        gate = self.gate(require_password=True)
        for password in (None, b"", b"other", TOKEN[:-1].encode()):
            self.clock.advance(1)  # within the auth rate
            result = self.connect(gate, password=password)
            self.assertEqual((result.code, result.reason),
                             (CONNACK_BAD_CREDENTIALS, "bad credentials"))
        self.assertEqual(self.connect(gate, password=TOKEN.encode()).code, CONNACK_ACCEPTED)

    def test_without_require_password_the_password_is_not_checked(self):
        self.store.put_token(TOKEN)
        self.assertEqual(self.connect(self.gate(), password=b"anything").code, CONNACK_ACCEPTED)

    def test_the_log_names_client_peer_prefix_and_limit_never_the_token(self):
        gate = self.gate()
        self.connect(gate, client_id="dev-9", username=TOKEN, host="10.0.0.7")
        (line,) = self.logged("at the gate")
        self.assertIn("dev-9", line)
        self.assertIn("10.0.0.7", line)
        self.assertIn(f"token {TOKEN[:6]}", line)
        self.assertIn("bad token", line)
        self.assertNotIn(TOKEN, line)


class BanTests(GateCase):
    def test_bans_come_first_by_client_id_username_and_address(self):
        self.store.put_token(TOKEN)
        gate = self.gate(allow_anonymous=True)
        gate.bans.add(ban("clientid", "bad-client"))
        gate.bans.add(ban("username", "alice"))
        gate.bans.add(ban("ip", "192.168.0.0/16"))
        for kwargs in ({"client_id": "bad-client"}, {"username": "alice", "password": b"secret"},
                       {"host": "192.168.7.7"}, {"username": None, "host": "192.168.0.1"}):
            result = self.connect(gate, **kwargs)
            self.assertEqual((result.code, result.reason), (CONNACK_NOT_AUTHORIZED, "banned"),
                             kwargs)
        self.assertEqual(self.refused("banned"), 4)
        self.assertEqual(self.store.calls["lookup_token"], 0)  # refused before any lookup
        self.assertEqual(self.connect(gate, host="10.1.1.1").code, CONNACK_ACCEPTED)

    def test_a_username_ban_of_a_token_hash_bans_that_token(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        gate.bans.add(ban("username", token_hash(TOKEN)))
        self.assertEqual(self.connect(gate).reason, "banned")

    def test_a_ban_made_while_the_token_was_looked_up_refuses(self):
        self.store.put_token(TOKEN)
        self.store.hold = True
        gate = self.gate()
        d = self.connecting(gate, client_id="c7")
        gate.bans.add(ban("clientid", "c7"))
        self.store.finish_lookups()
        self.assertEqual(self.successResultOf(d).reason, "banned")
        self.assertEqual(len(gate.tickets), 0)


class PeerHostTests(GateCase):
    def test_addresses_strings_and_nothing(self):
        self.assertEqual(peer_host(peer("10.0.0.9")), "10.0.0.9")
        self.assertEqual(peer_host("::1"), "::1")
        self.assertIsNone(peer_host(None))
        self.assertIsNone(peer_host(object()))
