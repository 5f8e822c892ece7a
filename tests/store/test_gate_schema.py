"""Schema step 4: accounts, tokens, bans, and the one counter their changes raise."""
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


class GateSchemaTests(unittest.TestCase):

    def test_every_change_to_the_gate_tables_raises_the_version(self):
        conn = fresh_db(self)
        self.assertEqual(version(conn), 0)
        conn.execute("INSERT INTO accounts (name, created, updated) VALUES ('acme', 1, 1)")
        self.assertEqual(version(conn), 1)
        conn.execute("INSERT INTO tokens (token_hash, prefix, account, created) "
                     "VALUES ('h', 'p', 'acme', 1)")
        conn.execute("UPDATE tokens SET active = 0")
        conn.execute("INSERT INTO bans (kind, value, who, reason, at) "
                     "VALUES ('ip', '192.0.2.1', 'op', 'test', 1)")
        conn.execute("DELETE FROM bans")
        conn.execute("UPDATE accounts SET active = 0")
        self.assertEqual(version(conn), 6)

    def test_a_message_commit_does_not_raise_the_version(self):
        conn = fresh_db(self)
        conn.execute("INSERT INTO messages (key, client_id, topic, payload, qos, retain, "
                     "received_at, committed_at, account) "
                     "VALUES ('k', 'c', 't', x'00', 1, 0, 1, 1, 'acme')")
        self.assertEqual(version(conn), 0)

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

    def test_step_5_is_the_latest(self):
        conn = fresh_db(self)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(len(MIGRATIONS), 5)
