"""The gate's tables through mqttd.store.accounts, tokens and bans (issue 13, points 1, 2, 7)."""
import re

from twisted.trial import unittest

from mqttd.store.accounts import (KEEP, AccountsError, add_account, disable_account,
                                  enable_account, gate_version, get_account, list_accounts,
                                  set_account)
from mqttd.store.bans import (add_ban, ban_version, canonical_ban_value, list_bans, remove_ban,
                               stored_ban_value, token_prefixes)
from mqttd.store.gate_records import BanRecord, TokenRecord, token_hash
from mqttd.store.tokens import (TokenInfo, add_token, list_tokens, lookup_token, lookup_tokens,
                                new_token, revoke_token)
from tests.support.accounts import gate_db, put_token


class Ticking:
    """A clock for ``now=``: 100, 101, 102, ... one second per call."""

    def __init__(self, start=100.0):
        self.value = start - 1

    def __call__(self):
        self.value += 1
        return self.value


class AccountTests(unittest.TestCase):
    def setUp(self):
        self.conn = gate_db(self)
        self.now = Ticking()

    def test_add_then_get_and_list(self):
        account = add_account(self.conn, "acme", max_connections=10, devices=8,
                              licence="gold", now=self.now)
        self.assertEqual((account.name, account.active, account.max_connections,
                          account.devices, account.licence, account.created, account.updated),
                         ("acme", True, 10, 8, "gold", 100.0, 100.0))
        add_account(self.conn, "beta", active=False, now=self.now)
        self.assertEqual(get_account(self.conn, "acme"), account)
        self.assertEqual([(a.name, a.active, a.max_connections) for a in list_accounts(self.conn)],
                         [("acme", True, 10), ("beta", False, None)])

    def test_a_name_must_fit_a_topic_level(self):
        for name in ("", "a/b", "a+b", "a#", "$SYS", "a b", "-lead", ".lead", "_lead",
                     "x" * 65, "acme\n", "caf\u00e9", None, 7):
            with self.assertRaises(AccountsError, msg=repr(name)) as caught:
                add_account(self.conn, name)
            self.assertIn("bad account name", str(caught.exception))
        for name in ("a", "A.b_c-9", "0" + "x" * 63):
            add_account(self.conn, name)
        self.assertEqual(len(list_accounts(self.conn)), 3)

    def test_twice_the_same_name_is_refused(self):
        add_account(self.conn, "acme")
        with self.assertRaisesRegex(AccountsError, "exists already"):
            add_account(self.conn, "acme")

    def test_counts_must_be_non_negative_integers(self):
        for bad in (-1, True, "3", 1.5):
            with self.assertRaisesRegex(AccountsError, "max_connections: must be an integer"):
                add_account(self.conn, "acme", max_connections=bad)
            with self.assertRaisesRegex(AccountsError, "devices: must be an integer"):
                add_account(self.conn, "acme", devices=bad)
        self.assertEqual(list_accounts(self.conn), [])

    def test_set_changes_what_is_given_and_the_updated_time(self):
        add_account(self.conn, "acme", max_connections=5, devices=3, licence="x", now=self.now)
        after = set_account(self.conn, "acme", max_connections=None, licence="gold", now=self.now)
        self.assertEqual((after.max_connections, after.devices, after.licence),
                         (None, 3, "gold"))
        self.assertEqual((after.created, after.updated), (100.0, 101.0))
        after = set_account(self.conn, "acme", devices=9, max_connections=KEEP, now=self.now)
        self.assertEqual((after.max_connections, after.devices), (None, 9))

    def test_set_needs_something_and_an_account(self):
        add_account(self.conn, "acme")
        with self.assertRaisesRegex(AccountsError, "nothing to set"):
            set_account(self.conn, "acme")
        with self.assertRaisesRegex(AccountsError, "no account named 'nope'"):
            set_account(self.conn, "nope", devices=1)
        with self.assertRaisesRegex(AccountsError, "max_connections"):
            set_account(self.conn, "acme", max_connections=-3)

    def test_disable_and_enable(self):
        add_account(self.conn, "acme", now=self.now)
        off = disable_account(self.conn, "acme", now=self.now)
        self.assertEqual((off.active, off.updated), (False, 101.0))
        on = enable_account(self.conn, "acme", now=self.now)
        self.assertEqual((on.active, on.updated), (True, 102.0))
        for change in (disable_account, enable_account, get_account):
            with self.assertRaisesRegex(AccountsError, "no account named 'ghost'"):
                change(self.conn, "ghost")

    def test_every_change_moves_its_version_and_a_refused_one_does_not(self):
        seen = [gate_version(self.conn)]
        add_account(self.conn, "acme")
        seen.append(gate_version(self.conn))
        set_account(self.conn, "acme", devices=2)
        seen.append(gate_version(self.conn))
        disable_account(self.conn, "acme")
        seen.append(gate_version(self.conn))
        token = add_token(self.conn, "acme")
        seen.append(gate_version(self.conn))
        revoke_token(self.conn, token)
        seen.append(gate_version(self.conn))
        self.assertEqual(seen, sorted(set(seen)))  # strictly rising
        self.assertEqual(ban_version(self.conn), 0)  # accounts and tokens: not bans'
        add_ban(self.conn, BanRecord("ip", "192.0.2.1", "op", "test", 1.0))
        remove_ban(self.conn, "ip", "192.0.2.1")
        self.assertEqual(ban_version(self.conn), 2)
        self.assertEqual(gate_version(self.conn), seen[-1])  # bans: not the tokens'
        self.assertFalse(remove_ban(self.conn, "ip", "192.0.2.1"))
        self.assertEqual(ban_version(self.conn), 2)
        for refused in (lambda: add_account(self.conn, "acme"),
                        lambda: add_token(self.conn, "ghost"),
                        lambda: revoke_token(self.conn, token)):
            self.assertRaises(AccountsError, refused)
        self.assertEqual(gate_version(self.conn), seen[-1])


class TokenTests(unittest.TestCase):
    def setUp(self):
        self.conn = gate_db(self)
        add_account(self.conn, "acme", max_connections=3)
        add_account(self.conn, "beta")

    def test_a_new_token_is_random_and_stored_only_as_hash_and_prefix(self):
        first = add_token(self.conn, "acme", now=lambda: 5.0)
        second = add_token(self.conn, "acme")
        self.assertNotEqual(first, second)
        self.assertRegex(first, r"\A[A-Za-z0-9_-]{32}\Z")
        rows = self.conn.execute("SELECT token_hash, prefix, account, active, created "
                                 "FROM tokens WHERE token_hash = ?",
                                 (token_hash(first),)).fetchall()
        self.assertEqual(rows, [(token_hash(first), first[:6], "acme", 1, 5.0)])
        dump = "\n".join(self.conn.iterdump())
        self.assertNotIn(first, dump)
        self.assertNotIn(second, dump)

    def test_a_new_token_never_starts_with_a_dash(self):
        # token_urlsafe starts one in 64 with "-", which a shell command reads as an option.
        tokens = [new_token() for _ in range(2000)]
        self.assertEqual([t for t in tokens if t.startswith("-")], [])
        self.assertEqual(len(set(tokens)), 2000)

    def test_a_token_needs_an_account(self):
        with self.assertRaisesRegex(AccountsError, "no account named 'ghost'"):
            add_token(self.conn, "ghost")
        self.assertEqual(list_tokens(self.conn), [])

    def test_list_shows_prefix_account_active_created_never_the_token(self):
        put_token(self.conn, "aaaaaa-first-token-of-acme-xxxxxx", "acme", created=1.0)
        put_token(self.conn, "bbbbbb-token-of-beta-xxxxxxxxxxxx", "beta", created=2.0)
        put_token(self.conn, "cccccc-revoked-of-acme-xxxxxxxxxx", "acme", active=False,
                  created=3.0)
        self.assertEqual(list_tokens(self.conn), [
            TokenInfo("aaaaaa", "acme", True, 1.0), TokenInfo("bbbbbb", "beta", True, 2.0),
            TokenInfo("cccccc", "acme", False, 3.0)])
        self.assertEqual([t.prefix for t in list_tokens(self.conn, "acme")], ["aaaaaa", "cccccc"])
        with self.assertRaisesRegex(AccountsError, "no account named 'ghost'"):
            list_tokens(self.conn, "ghost")

    def test_revoke_by_the_whole_token_or_a_unique_prefix(self):
        whole = put_token(self.conn, "abcdef-one-xxxxxxxxxxxxxxxxxxxxxx", "acme")
        put_token(self.conn, "zyxwvu-two-xxxxxxxxxxxxxxxxxxxxxx", "beta")
        self.assertEqual(revoke_token(self.conn, whole), TokenInfo("abcdef", "acme", False, 1.0))
        self.assertEqual(revoke_token(self.conn, "zyx").prefix, "zyxwvu")
        self.assertEqual([t.active for t in list_tokens(self.conn)], [False, False])

    def test_an_ambiguous_unknown_or_revoked_one_is_an_error(self):
        put_token(self.conn, "abcdef-one-xxxxxxxxxxxxxxxxxxxxxx", "acme")
        put_token(self.conn, "abcxyz-two-xxxxxxxxxxxxxxxxxxxxxx", "beta")
        with self.assertRaisesRegex(AccountsError, r"matches 2 active tokens: abcdef \(acme\), "
                                                   r"abcxyz \(beta\)"):
            revoke_token(self.conn, "abc")
        with self.assertRaisesRegex(AccountsError, "no token matches 'qqq'"):
            revoke_token(self.conn, "qqq")
        with self.assertRaisesRegex(AccountsError, "no token matches"):
            revoke_token(self.conn, "abcdef-one-but-not-quite-this-one")
        revoke_token(self.conn, "abcd")
        with self.assertRaisesRegex(AccountsError, "abcdef .account acme. is already revoked"):
            revoke_token(self.conn, "abcdef")
        with self.assertRaisesRegex(AccountsError, "give a token"):
            revoke_token(self.conn, "")
        # With abcdef revoked, "abc" names one active token.
        self.assertEqual(revoke_token(self.conn, "abc").prefix, "abcxyz")

    def test_a_prefix_is_matched_literally(self):
        put_token(self.conn, "abXdef-one-xxxxxxxxxxxxxxxxxxxxxx", "acme")
        for pattern in ("ab_", "AB", "ab%"):  # LIKE would match the first two
            with self.assertRaisesRegex(AccountsError, "no token matches"):
                revoke_token(self.conn, pattern)

    def test_lookup_joins_the_token_with_its_account(self):
        good = put_token(self.conn, "good-token-of-acme-xxxxxxxxxxxxxx", "acme")
        revoked = put_token(self.conn, "revoked-token-of-acme-xxxxxxxxxxx", "acme", active=False)
        idle = put_token(self.conn, "token-of-an-inactive-account-xxxx", "beta")
        disable_account(self.conn, "beta")
        self.assertEqual(lookup_token(self.conn, good),
                         TokenRecord("good-t", "acme", True, True, 3))
        self.assertEqual(lookup_token(self.conn, revoked),
                         TokenRecord("revoke", "acme", False, True, 3))
        self.assertEqual(lookup_token(self.conn, idle),
                         TokenRecord("token-", "beta", True, False, None))
        self.assertIsNone(lookup_token(self.conn, "never-made"))
        self.assertIsNone(lookup_token(self.conn, "\ud800"))  # not encodable: no token
        self.assertIsNone(lookup_token(self.conn, good[:-1]))

    def test_lookup_of_many_answers_each_even_past_one_query(self):
        tokens = [put_token(self.conn, f"token-{i:04d}-xxxxxxxxxxxxxxxxxxxxxx", "acme")
                  for i in range(600)]
        asked = tokens + ["unknown-one", tokens[0]]
        found = lookup_tokens(self.conn, asked)
        self.assertEqual(set(found), set(asked))
        self.assertIsNone(found["unknown-one"])
        self.assertEqual({found[t].account for t in tokens}, {"acme"})
        self.assertEqual(found[tokens[599]].prefix, "token-")
        self.assertEqual(lookup_tokens(self.conn, []), {})


class BanTests(unittest.TestCase):
    def setUp(self):
        self.conn = gate_db(self)

    def test_add_list_and_remove(self):
        forever = add_ban(self.conn, BanRecord("clientid", "dev-1", "op", "flaps", 10.0))
        timed = add_ban(self.conn, BanRecord("username", "tok", "flapping", "9 in 60 s",
                                             10.0, 70.0))
        self.assertEqual(list_bans(self.conn), [forever, timed])
        self.assertTrue(remove_ban(self.conn, "clientid", "dev-1"))
        self.assertFalse(remove_ban(self.conn, "clientid", "dev-1"))
        self.assertEqual(list_bans(self.conn), [timed])

    def test_a_ban_of_the_same_kind_and_value_replaces_the_old(self):
        add_ban(self.conn, BanRecord("ip", "192.0.2.7", "op", "first", 1.0, 5.0))
        again = add_ban(self.conn, BanRecord("ip", "192.0.2.7", "flapping", "second", 2.0))
        self.assertEqual(list_bans(self.conn), [again])
        self.assertEqual(list_bans(self.conn, now=10.0), [again])

    def test_only_bans_in_force_and_one_lifts_at_its_until(self):
        ban = add_ban(self.conn, BanRecord("clientid", "c", "op", "r", 10.0, 70.0))
        self.assertEqual(list_bans(self.conn, now=69.999), [ban])
        self.assertEqual(list_bans(self.conn, now=70.0), [])
        self.assertEqual(list_bans(self.conn), [ban])  # all of them, expired too

    def test_an_ip_ban_is_an_address_or_a_network(self):
        self.assertEqual(canonical_ban_value("ip", "2001:DB8::1"), "2001:db8::1")
        self.assertEqual(canonical_ban_value("ip", "10.0.0.0/8"), "10.0.0.0/8")
        self.assertEqual(canonical_ban_value("ip", "192.0.2.1"), "192.0.2.1")
        with self.assertRaisesRegex(AccountsError, r"has bits set past its prefix "
                                                   r"\(the network is 10.0.0.0/8\)"):
            add_ban(self.conn, BanRecord("ip", "10.1.2.3/8", "op", "r", 1.0))
        for bad in ("example.com", "10.0.0.256", " 10.0.0.1", "10.0.0.0/33"):
            with self.assertRaisesRegex(AccountsError, "not an IP address or network"):
                add_ban(self.conn, BanRecord("ip", bad, "op", "r", 1.0))
        add_ban(self.conn, BanRecord("ip", "2001:DB8::1", "op", "r", 1.0))
        self.assertTrue(remove_ban(self.conn, "ip", "2001:db8:0::1"))

    def test_other_bad_bans(self):
        for record, error in (
                (BanRecord("port", "1883", "op", "r", 1.0), "bad ban kind 'port'"),
                (BanRecord("clientid", "", "op", "r", 1.0), "needs a non-empty value"),
                (BanRecord("username", "", "op", "r", 1.0), "needs a non-empty value"),
                (BanRecord("clientid", "c", None, "r", 1.0), "who: must be text"),
                (BanRecord("clientid", "c", "op", "r", 5.0, 5.0), re.escape("until (5.0)"))):
            with self.assertRaisesRegex(AccountsError, error):
                add_ban(self.conn, record)
        with self.assertRaisesRegex(AccountsError, "not an IP"):
            remove_ban(self.conn, "ip", "nope")
        self.assertEqual(list_bans(self.conn), [])


class TokenBanTests(unittest.TestCase):
    """A username ban of a device token holds the token's hash, never the token."""

    TOKEN = "0zoub16X3g8XOOTbWiaW-XcJdnGPnqcU"

    def setUp(self):
        self.conn = gate_db(self)

    def test_a_token_is_stored_by_its_hash_a_static_user_and_a_hash_as_they_are(self):
        hashed = token_hash(self.TOKEN)
        self.assertEqual(stored_ban_value("username", self.TOKEN, {"alice"}), hashed)
        self.assertEqual(stored_ban_value("username", "short", {"alice"}), token_hash("short"))
        self.assertEqual(stored_ban_value("username", "alice", {"alice"}), "alice")
        self.assertEqual(stored_ban_value("username", hashed, {"alice"}), hashed)
        self.assertEqual(stored_ban_value("username", hashed.upper(), ()),
                         token_hash(hashed.upper()))  # not spelled as a hash: a token
        self.assertEqual(stored_ban_value("clientid", self.TOKEN, ()), self.TOKEN)
        with self.assertRaisesRegex(AccountsError, "must be UTF-8 text"):
            stored_ban_value("username", "bad\udcff", ())

    def test_removed_by_the_token_or_by_its_hash(self):
        for given in (self.TOKEN, token_hash(self.TOKEN)):
            add_ban(self.conn, BanRecord("username", token_hash(self.TOKEN), "op", "r", 1.0))
            self.assertTrue(remove_ban(self.conn, "username", given))
            self.assertEqual(list_bans(self.conn), [])
        self.assertFalse(remove_ban(self.conn, "username", self.TOKEN))

    def test_the_prefixes_of_the_tokens_whose_hash_a_ban_holds(self):
        add_account(self.conn, "acme")
        put_token(self.conn, self.TOKEN, "acme")
        bans = [add_ban(self.conn, BanRecord("username", value, "op", "r", 1.0))
                for value in (token_hash(self.TOKEN), token_hash("unknown"), "alice")]
        bans.append(add_ban(self.conn, BanRecord("clientid", token_hash(self.TOKEN), "op", "r",
                                                 1.0)))
        self.assertEqual(token_prefixes(self.conn, bans), {token_hash(self.TOKEN): "0zoub1"})
