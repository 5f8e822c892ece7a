"""GateStore: the gate's tables read and written off the reactor, on a real SQLite file."""
import os
import sqlite3

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mqttd.ingest.service import prepare_database
from mqttd.metrics import Metrics
from mqttd.store.accounts import AccountsError, add_account, disable_account
from mqttd.store.gate_records import BanRecord, StoreVersions, TokenRecord
from mqttd.store.gate_store import GateStore
from mqttd.store.schema import SchemaError
from mqttd.store.pool import StoreClosed
from tests.support.accounts import put_token


class GateStoreTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp(), "mqttd.db")
        os.makedirs(os.path.dirname(self.path))
        prepare_database(self.path)
        self.operator = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        self.addCleanup(self.operator.close)
        add_account(self.operator, "acme", max_connections=2)
        add_account(self.operator, "idle")
        disable_account(self.operator, "idle")
        self.good = put_token(self.operator, "good-token-of-acme-xxxxxxxxxxxxxx", "acme")
        self.idle = put_token(self.operator, "token-of-idle-xxxxxxxxxxxxxxxxxxx", "idle")
        self.metrics = Metrics()
        self.store = GateStore(reactor, self.path, self.metrics)

    @defer.inlineCallbacks
    def started(self):
        yield self.store.start()
        self.addCleanup(self.store.close)
        return self.store

    @defer.inlineCallbacks
    def test_lookups_answer_records_and_each_token_read_is_counted(self):
        store = yield self.started()
        record = yield store.lookup_token(self.good)
        self.assertEqual(record, TokenRecord("good-t", "acme", True, True, 2))
        self.assertIsNone((yield store.lookup_token("never-made")))
        self.assertEqual(self.metrics.gate_token_lookups, 2)
        found = yield store.lookup_tokens(iter([self.good, self.idle, "never-made"]))
        self.assertEqual(found, {self.good: record,
                                 self.idle: TokenRecord("token-", "idle", True, False, None),
                                 "never-made": None})
        self.assertEqual(self.metrics.value("gate_token_lookups"), 5)

    @defer.inlineCallbacks
    def test_accounts_are_listed_by_name(self):
        store = yield self.started()
        accounts = yield store.accounts()
        self.assertEqual([(a.name, a.active, a.max_connections) for a in accounts],
                         [("acme", True, 2), ("idle", False, None)])

    @defer.inlineCallbacks
    def test_bans_in_force_added_and_removed_and_only_the_ban_version_moves(self):
        store = yield self.started()
        before = yield store.versions()
        now = reactor.seconds()
        kept = yield store.add_ban(BanRecord("ip", "2001:DB8::/32", "flapping", "8 in 60 s",
                                             now, now + 3600))
        self.assertEqual(kept.value, "2001:db8::/32")
        yield store.add_ban(BanRecord("clientid", "lapsed", "op", "old", now - 20, now - 10))
        self.assertEqual((yield store.bans()), [kept])  # the lapsed one is not in force
        self.assertTrue((yield store.remove_ban("ip", "2001:db8::/32")))
        self.assertFalse((yield store.remove_ban("ip", "2001:db8::/32")))
        self.assertEqual((yield store.bans()), [])
        self.assertEqual((yield store.versions()),
                         StoreVersions(before.tokens, before.bans + 3))
        yield self.assertFailure(store.add_ban(BanRecord("ip", "10.1.2.3/8", "op", "r", now)),
                                 AccountsError)

    @defer.inlineCallbacks
    def test_an_operators_change_is_seen_at_the_next_read(self):
        store = yield self.started()
        before = yield store.versions()
        disable_account(self.operator, "acme")
        self.assertEqual((yield store.versions()),
                         StoreVersions(before.tokens + 1, before.bans))
        self.assertFalse((yield store.lookup_token(self.good)).account_active)

    @defer.inlineCallbacks
    def test_a_write_waits_for_the_lock_the_ingest_holds(self):
        store = yield self.started()
        self.operator.execute("BEGIN IMMEDIATE")
        reactor.callLater(0.2, self.operator.execute, "COMMIT")
        yield store.add_ban(BanRecord("clientid", "c", "op", "r", 1.0))
        self.assertEqual(len((yield store.bans())), 1)

    @defer.inlineCallbacks
    def test_a_missing_or_unprepared_file_fails_start(self):
        missing = GateStore(reactor, self.path + ".nope", self.metrics)
        yield self.assertFailure(missing.start(), sqlite3.OperationalError)
        self.assertFalse(os.path.exists(self.path + ".nope"))  # not created
        empty = self.path + ".empty"
        with open(empty, "wb"):  # what SQLite takes for a new database: schema 0
            pass
        yield self.assertFailure(GateStore(reactor, empty, self.metrics).start(), SchemaError)

    @defer.inlineCallbacks
    def test_closed_it_refuses_calls_and_closes_once(self):
        store = yield self.started()
        yield store.close()
        yield store.close()
        yield self.assertFailure(store.lookup_token(self.good), StoreClosed)
        yield self.assertFailure(store.versions(), StoreClosed)
