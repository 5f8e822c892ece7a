"""Builders for tests of the gate's tables: a migrated database, tokens of known text.

``put_token`` stores a token whose text the test chose (the CLI makes random ones), so
prefixes can collide on purpose and lookups are deterministic.
"""
import sqlite3

import sqlite_utils

from mqttd.store.gate_records import token_hash, token_prefix
from mqttd.store.schema import migrate


def gate_db(testcase, path=":memory:"):
    """A sqlite3 connection (autocommit) to a database at the latest schema."""
    conn = sqlite3.connect(path, isolation_level=None)
    testcase.addCleanup(conn.close)
    migrate(sqlite_utils.Database(conn))
    return conn


def put_token(conn, token, account, active=True, created=1.0):
    """Store ``token`` (its hash and prefix) for ``account``, as add_token would."""
    conn.execute("INSERT INTO tokens (token_hash, prefix, account, active, created) "
                 "VALUES (?, ?, ?, ?, ?)",
                 (token_hash(token), token_prefix(token), account, int(active), created))
    return token
