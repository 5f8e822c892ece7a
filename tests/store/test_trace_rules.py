"""The ``trace_rules`` table: rules by client id, username and IP, bounded in number;
schema step 6 on a file written by step 5 (main's ``ban_version``)."""
import os
import sqlite3

import sqlite_utils
from twisted.trial import unittest

from mqttd.store.accounts import AccountsError
from mqttd.store.schema import MIGRATIONS, migrate
from mqttd.store.trace_rules import (
    MAX_RULES, TraceRule, add_rule, list_rules, remove_rule, trace_version)


def fresh(testcase):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    testcase.addCleanup(conn.close)
    migrate(sqlite_utils.Database(conn))
    return conn


class TraceRulesTests(unittest.TestCase):
    def test_add_replaces_list_filters_lapsed_remove(self):
        conn = fresh(self)
        add_rule(conn, TraceRule("client_id", "dev", "op", 10.0, 20.0))
        add_rule(conn, TraceRule("client_id", "dev", "op2", 11.0, None))  # replaced
        stored = add_rule(conn, TraceRule("ip", "2001:DB8::1", "op", 10.0, 15.0))
        self.assertEqual(stored.value, "2001:db8::1")
        self.assertEqual(list_rules(conn), [TraceRule("client_id", "dev", "op2", 11.0, None),
                                            TraceRule("ip", "2001:db8::1", "op", 10.0, 15.0)])
        self.assertEqual([r.kind for r in list_rules(conn, now=15.0)], ["client_id"])
        self.assertTrue(remove_rule(conn, "ip", "2001:db8::1"))
        self.assertFalse(remove_rule(conn, "ip", "2001:db8::1"))

    def test_every_change_raises_the_version(self):
        conn = fresh(self)
        self.assertEqual(trace_version(conn), 0)
        add_rule(conn, TraceRule("username", "alice", "op", 1.0))
        add_rule(conn, TraceRule("username", "alice", "op", 2.0))
        remove_rule(conn, "username", "alice")
        self.assertEqual(trace_version(conn), 3)

    def test_bad_rules_are_refused(self):
        conn = fresh(self)
        for kind, value in (("host", "x"), ("client_id", ""), ("ip", "10.1.2.3/8"),
                            ("ip", "nope")):
            with self.assertRaises(AccountsError, msg=(kind, value)):
                add_rule(conn, TraceRule(kind, value, "op", 1.0))
        with self.assertRaises(AccountsError):
            add_rule(conn, TraceRule("client_id", "x", "op", 5.0, 4.0))
        with self.assertRaises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO trace_rules (kind, value, who, at) VALUES ('port', '1', 'op', 1)")

    def test_at_most_max_rules(self):
        conn = fresh(self)
        conn.executemany("INSERT INTO trace_rules (kind, value, who, at) VALUES (?, ?, 'op', 1)",
                         [("client_id", f"c{n}") for n in range(MAX_RULES)])
        with self.assertRaises(AccountsError) as caught:
            add_rule(conn, TraceRule("client_id", "one-more", "op", 1.0))
        self.assertIn(f"at most {MAX_RULES}", str(caught.exception))
        add_rule(conn, TraceRule("client_id", "c0", "op", 2.0))  # replacing one still works


class TraceRulesStepTests(unittest.TestCase):
    """Step 6 on a real file written by step 5: its rows kept, a counter of its own."""

    def setUp(self):
        self.path = os.path.join(os.path.abspath(self.mktemp()), "mqttd.db")
        os.makedirs(os.path.dirname(self.path))
        conn = self.connect()
        migrate(sqlite_utils.Database(conn), MIGRATIONS[:5])
        conn.execute("INSERT INTO accounts (name, max_connections, created, updated) "
                     "VALUES ('acme', 3, 1, 1)")
        conn.execute("INSERT INTO bans (kind, value, who, reason, at, until) "
                     "VALUES ('clientid', 'flapper', 'flapping', '15 in 60 s', 1, 301)")
        conn.close()

    def connect(self):
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    def versions(self, conn):
        return tuple(conn.execute(f"SELECT version FROM {table}").fetchone()[0]
                     for table in ("gate_version", "ban_version", "trace_version"))

    def test_the_rows_are_kept_and_each_counter_moves_alone(self):
        conn = self.connect()
        self.assertEqual(migrate(sqlite_utils.Database(conn)), (5, 6))
        conn = self.connect()  # what another process sees once it committed
        self.assertEqual(conn.execute("SELECT name FROM accounts").fetchall(), [("acme",)])
        self.assertEqual(conn.execute("SELECT value FROM bans").fetchall(), [("flapper",)])
        before = self.versions(conn)
        self.assertEqual(before[2], 0)
        add_rule(conn, TraceRule("client_id", "dev", "op", 1.0))
        self.assertEqual(self.versions(conn), (before[0], before[1], 1))
        conn.execute("DELETE FROM bans")
        self.assertEqual(self.versions(conn), (before[0], before[1] + 1, 1))
        self.assertEqual(list_rules(conn), [TraceRule("client_id", "dev", "op", 1.0, None)])

    def test_a_failing_step_6_leaves_step_5_as_it_was(self):
        def broken(db):
            raise RuntimeError("disk gone")

        conn = self.connect()
        with self.assertRaises(RuntimeError):
            migrate(sqlite_utils.Database(conn), MIGRATIONS + (broken,))
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 5)
        self.assertEqual(conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'trace_rules'").fetchone()[0], 0)
