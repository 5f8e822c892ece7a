"""The gate's tables as the master (or the single process) reads them: asynchronously.

The gate must never block the reactor on SQLite, so ``GateStore`` keeps its own sqlite3
connection to mqttd.db on its own ``ThreadPool(1, 1)`` (a connection belongs to the
thread that opened it) and answers every call with a Deferred, running the same
synchronous functions the operator's CLI uses (``mqttd.store.accounts``, ``tokens``,
``bans``). The ingest writer holds the write lock for a moment at each commit, so the
connection waits up to ``busy_timeout`` instead of failing.

The file must be prepared already (created and migrated: the master does it with
``prepare_database`` before it starts anything); ``start`` only opens it.

Every token the gate had to read from SQLite is counted (``gate_token_lookups``): the
gate's caches promise that a storm of bad tokens costs one read per token, and this is
the counter that shows it.
"""
import os
import sqlite3
from functools import partial
from urllib.parse import quote

from mqttd.store import accounts, bans, tokens
from mqttd.store.gate_records import StoreVersions
from mqttd.store.pool import OnOwnConnection
from mqttd.store.schema import MIGRATIONS, SchemaError

__all__ = ["GateStore", "connect_gate", "read_versions"]


def connect_gate(path, busy_timeout=5.0):
    """A sqlite3 connection to the existing, prepared database at ``path``, in
    autocommit mode, waiting up to ``busy_timeout`` seconds for a lock.

    The file is never created here (``mode=rw``): whoever owns the data dir prepares
    it first (the master and the ingest with ``prepare_database``, the CLI likewise),
    so a wrong path fails loudly instead of making an empty database.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current != len(MIGRATIONS):
            raise SchemaError(f"{path}: schema version {current}, this mqttd needs "
                              f"{len(MIGRATIONS)}; the database is not prepared")
    except BaseException:
        conn.close()
        raise
    return conn


def read_versions(conn):
    """Both change counters (``gate_version``, ``ban_version``) in one read."""
    return StoreVersions(*conn.execute(
        "SELECT (SELECT version FROM gate_version), (SELECT version FROM ban_version)"
    ).fetchone())


class GateStore(OnOwnConnection):
    """Accounts, tokens and bans for the gate, each call a Deferred.

    ``reactor`` provides ``callFromThread`` and ``seconds()`` (which bans are in force);
    ``metrics`` the process's Metrics. ``threadpool`` defaults to a fresh one-thread
    pool owned by this store. ``start()`` opens the file (failing if it is missing or
    not prepared), ``close()`` closes it; both are idempotent.
    """

    def __init__(self, reactor, path, metrics, busy_timeout=5.0, threadpool=None):
        super().__init__(reactor, path, threadpool, "mqttd-gate",
                         partial(connect_gate, busy_timeout=busy_timeout))
        self._metrics = metrics

    # -- tokens ------------------------------------------------------------------------

    def lookup_token(self, token):
        """Deferred of the TokenRecord of ``token``, or None if it is not stored."""
        self._metrics.gate_token_lookups += 1
        return self._on_conn(tokens.lookup_token, token)

    def lookup_tokens(self, many):
        """Deferred of {token: TokenRecord or None} for each of ``many`` (one read each,
        counted, done in one query)."""
        many = list(many)
        self._metrics.gate_token_lookups += len(many)
        return self._on_conn(tokens.lookup_tokens, many)

    # -- accounts ----------------------------------------------------------------------

    def accounts(self):
        """Deferred of every AccountRecord, by name (the manhole's ``accounts()``)."""
        return self._on_conn(accounts.list_accounts)

    # -- bans --------------------------------------------------------------------------

    def bans(self):
        """Deferred of the list of BanRecords in force now (``reactor.seconds()``)."""
        return self._on_conn(bans.active_bans, self._reactor.seconds())

    def add_ban(self, record):
        """Store ``record`` (a BanRecord; replaces a ban of the same kind and value):
        Deferred of the record as stored. Fails with AccountsError for a bad value."""
        return self._on_conn(bans.add_ban, record)

    def remove_ban(self, kind, value):
        """Remove a ban: Deferred of True, or False if there was none to remove."""
        return self._on_conn(bans.remove_ban, kind, value)

    # -- changes -----------------------------------------------------------------------

    def versions(self):
        """Deferred of the StoreVersions: ``tokens`` moves on every change of accounts
        or tokens, ``bans`` on every change of bans."""
        return self._on_conn(read_versions)

