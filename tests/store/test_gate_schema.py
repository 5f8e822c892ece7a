"""Schema steps 4 and 5: accounts, tokens, bans, and the two counters their changes
raise (accounts and tokens: ``gate_version``; bans: ``ban_version``, step 5). Step 6,
the trace's rules, in test_trace_rules."""
import os
import sqlite3

import sqlite_utils
from twisted.trial import unittest

from mqttd.store.schema import MIGRATIONS, migrate


def fresh_db(testcase):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    testcase.addCleanup(conn.close)
    db = sqlite_utils.Database(conn)
    migrate(db)
    return conn


def version(conn):
    return conn.execute("SELECT version FROM gate_version").fetchone()[0]


def ban_version(conn):
    return conn.execute("SELECT version FROM ban_version").fetchone()[0]


class GateSchemaTests(unittest.TestCase):

    def test_accounts_and_tokens_raise_one_version_and_bans_the_other(self):
        conn = fresh_db(self)
        self.assertEqual((version(conn), ban_version(conn)), (0, 0))
        conn.execute("INSERT INTO accounts (name, created, updated) VALUES ('acme', 1, 1)")
        self.assertEqual(version(conn), 1)
        conn.execute("INSERT INTO tokens (token_hash, prefix, account, created) "
                     "VALUES ('h', 'p', 'acme', 1)")
        conn.execute("UPDATE tokens SET active = 0")
        conn.execute("INSERT INTO bans (kind, value, who, reason, at) "
                     "VALUES ('ip', '192.0.2.1', 'op', 'test', 1)")
        conn.execute("UPDATE bans SET until = 5")
        conn.execute("DELETE FROM bans")
        conn.execute("UPDATE accounts SET active = 0")
        conn.execute("DELETE FROM tokens")
        self.assertEqual((version(conn), ban_version(conn)), (5, 3))

    def test_a_message_commit_does_not_raise_the_version(self):
        conn = fresh_db(self)
        conn.execute("INSERT INTO messages (key, client_id, topic, payload, qos, retain, "
                     "received_at, committed_at, account) "
                     "VALUES ('k', 'c', 't', x'00', 1, 0, 1, 1, 'acme')")
        self.assertEqual((version(conn), ban_version(conn)), (0, 0))

    def test_rows_outside_the_rules_are_refused(self):
        conn = fresh_db(self)
        for sql in ("INSERT INTO accounts (name, created, updated) VALUES ('', 1, 1)",
                    "INSERT INTO accounts (name, active, created, updated) VALUES ('a', 2, 1, 1)",
                    "INSERT INTO accounts (name, max_connections, created, updated) "
                    "VALUES ('a', -1, 1, 1)",
                    "INSERT INTO bans (kind, value, who, reason, at) "
                    "VALUES ('port', '1', 'op', 'x', 1)"):
            with self.assertRaises(sqlite3.IntegrityError, msg=sql):
                conn.execute(sql)

    def test_step_6_is_the_latest(self):
        conn = fresh_db(self)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(len(MIGRATIONS), 6)


class BanVersionStepTests(unittest.TestCase):
    """Step 5 on a real file written by step 4: its rows kept, the counters split."""

    def setUp(self):
        self.path = os.path.join(os.path.abspath(self.mktemp()), "mqttd.db")
        os.makedirs(os.path.dirname(self.path))
        conn = self.connect()
        migrate(sqlite_utils.Database(conn), MIGRATIONS[:4])
        conn.execute("INSERT INTO accounts (name, max_connections, created, updated) "
                     "VALUES ('acme', 3, 1, 1)")
        conn.execute("INSERT INTO tokens (token_hash, prefix, account, created) "
                     "VALUES ('h', 'p', 'acme', 1)")
        conn.execute("INSERT INTO bans (kind, value, who, reason, at, until) "
                     "VALUES ('clientid', 'flapper', 'flapping', '15 in 60 s', 1, 301)")
        conn.execute("INSERT INTO messages (key, client_id, topic, payload, qos, retain, "
                     "received_at, committed_at, account) "
                     "VALUES ('k', 'c', 't', x'00', 1, 0, 1, 1, 'acme')")
        self.assertEqual(version(conn), 3)  # step 4: bans on the one counter
        conn.close()

    def connect(self):
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    def test_the_rows_are_kept_and_only_bans_move_the_ban_version(self):
        conn = self.connect()
        self.assertEqual(migrate(sqlite_utils.Database(conn), MIGRATIONS[:5]), (4, 5))
        conn = self.connect()  # what another process sees once it committed
        self.assertEqual(conn.execute("SELECT name, max_connections FROM accounts").fetchall(),
                         [("acme", 3)])
        self.assertEqual(conn.execute("SELECT token_hash, account FROM tokens").fetchall(),
                         [("h", "acme")])
        self.assertEqual(conn.execute("SELECT kind, value, until FROM bans").fetchall(),
                         [("clientid", "flapper", 301.0)])
        self.assertEqual(conn.execute("SELECT key, account FROM messages").fetchall(),
                         [("k", "acme")])
        self.assertEqual((version(conn), ban_version(conn)), (3, 0))
        conn.execute("INSERT INTO bans (kind, value, who, reason, at) "
                     "VALUES ('ip', '192.0.2.1', 'op', 'test', 1)")
        conn.execute("DELETE FROM bans WHERE kind = 'clientid'")
        self.assertEqual((version(conn), ban_version(conn)), (3, 2))
        conn.execute("UPDATE accounts SET active = 0")
        self.assertEqual((version(conn), ban_version(conn)), (4, 2))
        triggers = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'bans'")}
        self.assertEqual(triggers, {"bans_insert_ban_version", "bans_update_ban_version",
                                    "bans_delete_ban_version"})

    def test_a_failing_step_5_leaves_step_4_as_it_was(self):
        def broken(db):
            raise RuntimeError("disk gone")

        conn = self.connect()
        with self.assertRaises(RuntimeError):
            migrate(sqlite_utils.Database(conn), MIGRATIONS[:5] + (broken,))
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 4)
        self.assertEqual(conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'ban_version'").fetchone()[0], 0)
        conn.execute("DELETE FROM bans")
        self.assertEqual(version(conn), 4)  # still step 4's one counter
