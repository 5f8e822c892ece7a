"""The versioned schema of mqttd.db: migration steps keyed by ``PRAGMA user_version``.

Step N (1-based) turns a version N-1 database into version N. ``migrate`` applies every
missing step in order inside ONE ``BEGIN IMMEDIATE`` transaction together with the new
``user_version``, so a crash or a failing step leaves the file exactly as it was, and two
ingest processes starting at once cannot both migrate (the second waits for the write
lock, then sees the new version and does nothing).

Steps are frozen SQL, not sqlite-utils ``create_table`` calls: what a migration creates
must never change because a library's defaults did. Add a step to change the schema;
never edit a released one.

The ``messages`` table is a data contract users query directly (see
docs/ingest-webhook.md). It is STRICT so a wrong type (a text payload, say) fails the
commit instead of being stored quietly, and ``key`` is NOT NULL explicitly because a
non-STRICT TEXT PRIMARY KEY would accept NULL.
"""
import sqlite3
from contextlib import contextmanager


class SchemaError(Exception):
    """The database cannot be used by this version of mqttd."""


class SchemaTooNew(SchemaError):
    """The database was written by a newer mqttd; refusing to touch it."""


def _v1_messages(db):
    db.execute(
        """
        CREATE TABLE messages (
            key          TEXT    NOT NULL PRIMARY KEY CHECK (length(key) > 0),
            client_id    TEXT    NOT NULL,
            username     TEXT,
            topic        TEXT    NOT NULL,
            payload      BLOB    NOT NULL,
            qos          INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            retain       INTEGER NOT NULL CHECK (retain IN (0, 1)),
            received_at  REAL    NOT NULL,
            committed_at REAL    NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX messages_client_received ON messages (client_id, received_at)")


_MESSAGES_V2 = """
    CREATE TABLE {name} (
        key          TEXT    NOT NULL PRIMARY KEY CHECK (key <> ''),
        client_id    TEXT    NOT NULL,
        username     TEXT,
        topic        TEXT    NOT NULL,
        payload      BLOB    NOT NULL,
        qos          INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
        retain       INTEGER NOT NULL CHECK (retain BETWEEN 0 AND 1),
        received_at  REAL    NOT NULL,
        committed_at REAL    NOT NULL
    ) STRICT
"""


def _v2_cheaper_checks(db):
    """The same rules as v1, in forms SQLite checks ~1.2 us per row faster.

    ``length(key) > 0`` becomes ``key <> ''`` and ``IN (0, 1, 2)`` becomes ``BETWEEN``:
    in a STRICT table (key is TEXT, qos and retain INTEGER) they accept exactly the
    same rows. Measured on 100-row commits, v1's checks were a third of the insert
    time, and every commit is on the path of a PUBACK. SQLite cannot change a CHECK in
    place, so the table is rebuilt (its documented ALTER TABLE procedure), inside the
    migration's one transaction: a crash midway leaves v1 intact.
    """
    # ``messages`` is a contract users query, so it may carry their own objects (a
    # trigger's tbl_name is spelled as its author wrote it: NOCASE, as SQLite's names). DROP
    # TABLE takes its indexes and triggers along: they are saved and made again (the
    # procedure's steps 3 and 8). Views are kept by name: with the legacy rename, which
    # does not re-check every view, one on ``messages`` (pointing at the dropped table
    # for a moment) no longer fails the RENAME and with it every start of mqttd.
    saved = [sql for (sql,) in db.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' COLLATE NOCASE AND type IN "
        "('index', 'trigger') AND sql IS NOT NULL AND "
        "name <> 'messages_client_received' COLLATE NOCASE ORDER BY type, rowid").fetchall()]
    db.execute(_MESSAGES_V2.format(name="messages_v2"))
    db.execute("INSERT INTO messages_v2 SELECT key, client_id, username, topic, payload, "
               "qos, retain, received_at, committed_at FROM messages")
    db.execute("PRAGMA legacy_alter_table = ON")
    try:
        db.execute("DROP TABLE messages")
        db.execute("ALTER TABLE messages_v2 RENAME TO messages")
    finally:
        db.execute("PRAGMA legacy_alter_table = OFF")
    db.execute("CREATE INDEX messages_client_received ON messages (client_id, received_at)")
    for sql in saved:
        db.execute(sql)


def _v3_retained(db):
    """The retained message of each topic, kept by the ingest writer in the transaction
    that commits the message (``mqttd.store.retained``), so a broker that starts finds
    the retained set every acknowledged retained PUBLISH left.

    A row with an empty payload is a tombstone: the topic was cleared, and the clear's
    ``key`` keeps an older retained PUBLISH of the same broker run, committed late (a
    batch retried across a reconnect), from bringing the old value back. Readers skip
    tombstones.
    """
    db.execute(
        """
        CREATE TABLE retained (
            topic        TEXT    NOT NULL PRIMARY KEY,
            payload      BLOB    NOT NULL,
            qos          INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
            key          TEXT    NOT NULL,
            updated_at   REAL    NOT NULL
        ) STRICT
        """
    )


def _v4_gate(db):
    """The gate's tables (accounts, their tokens, bans) and the account of each message.

    ``tokens.token_hash`` is the SHA-256 of the token, hex: a token is a random secret,
    so a plain hash is enough, and a stolen file gives no usable token. ``bans.until``
    NULL means for ever. ``gate_version`` holds one counter that every change to the
    three tables raises (the triggers below), so a running master notices an operator's
    change by reading one row, and the ingest writer's commits (many per second) do not
    look like changes. ``messages.account`` is NULL for clients without an account
    (static users, anonymous); its index reads one account's recent data fast.
    """
    db.execute(
        """
        CREATE TABLE accounts (
            name            TEXT    NOT NULL PRIMARY KEY CHECK (name <> ''),
            active          INTEGER NOT NULL DEFAULT 1 CHECK (active BETWEEN 0 AND 1),
            max_connections INTEGER CHECK (max_connections >= 0),
            devices         INTEGER CHECK (devices >= 0),
            licence         TEXT,
            created         REAL    NOT NULL,
            updated         REAL    NOT NULL
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE tokens (
            token_hash TEXT    NOT NULL PRIMARY KEY,
            prefix     TEXT    NOT NULL,
            account    TEXT    NOT NULL REFERENCES accounts (name) ON UPDATE CASCADE,
            active     INTEGER NOT NULL DEFAULT 1 CHECK (active BETWEEN 0 AND 1),
            created    REAL    NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX tokens_account ON tokens (account)")
    db.execute(
        """
        CREATE TABLE bans (
            kind   TEXT NOT NULL CHECK (kind IN ('clientid', 'username', 'ip')),
            value  TEXT NOT NULL CHECK (value <> ''),
            who    TEXT NOT NULL,
            reason TEXT NOT NULL,
            at     REAL NOT NULL,
            until  REAL,
            PRIMARY KEY (kind, value)
        ) STRICT
        """
    )
    db.execute("CREATE TABLE gate_version (version INTEGER NOT NULL) STRICT")
    db.execute("INSERT INTO gate_version (version) VALUES (0)")
    for table in ("accounts", "tokens", "bans"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_version AFTER {event} ON {table} "
                f"BEGIN UPDATE gate_version SET version = version + 1; END"
            )
    db.execute("ALTER TABLE messages ADD COLUMN account TEXT")
    db.execute("CREATE INDEX messages_account_received ON messages (account, received_at)")


def _v5_ban_version(db):
    """Bans get a change counter of their own, ``ban_version``; ``gate_version`` now
    moves on accounts and tokens only.

    The gate forgets its cached tokens (known ones, and the negative cache of unknown
    ones) whenever ``gate_version`` moves. With bans on the same counter, every ban the
    flapping detector wrote cleared both caches too, so a flapping storm beside a storm
    of bad tokens sent the bad tokens to SQLite again each second. Split, a ban reloads
    the bans alone. The counters' values are kept (nothing compares them across files).
    """
    db.execute("CREATE TABLE ban_version (version INTEGER NOT NULL) STRICT")
    db.execute("INSERT INTO ban_version (version) VALUES (0)")
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute(f"DROP TRIGGER bans_{event.lower()}_version")
        db.execute(
            f"CREATE TRIGGER bans_{event.lower()}_ban_version AFTER {event} ON bans "
            f"BEGIN UPDATE ban_version SET version = version + 1; END"
        )


def _v6_trace_rules(db):
    """Which clients the per-client trace records every publish of (``mqttd trace add``,
    ``mqttd.manage.trace_sync``): by client id, username (a token user's token prefix)
    or IP address / network, each until ``until`` (NULL: until removed). Never a token:
    a token user is named by its prefix. ``trace_version`` is raised by every change,
    as ``gate_version`` is for the gate's tables, so a running appliance notices a
    change by reading one row, apart from the gate's (a trace rule must not make the
    gate drop its token caches)."""
    db.execute(
        """
        CREATE TABLE trace_rules (
            kind   TEXT NOT NULL CHECK (kind IN ('client_id', 'username', 'ip')),
            value  TEXT NOT NULL CHECK (value <> ''),
            who    TEXT NOT NULL,
            at     REAL NOT NULL,
            until  REAL,
            PRIMARY KEY (kind, value)
        ) STRICT
        """
    )
    db.execute("CREATE TABLE trace_version (version INTEGER NOT NULL) STRICT")
    db.execute("INSERT INTO trace_version (version) VALUES (0)")
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER trace_rules_{event.lower()}_version AFTER {event} ON "
            f"trace_rules BEGIN UPDATE trace_version SET version = version + 1; END"
        )


MIGRATIONS = (
    _v1_messages, _v2_cheaper_checks, _v3_retained, _v4_gate, _v5_ban_version,
    _v6_trace_rules,
)
"""Step i+1 of the schema is ``MIGRATIONS[i]``; ``len(MIGRATIONS)`` is the latest version."""


@contextmanager
def immediate(db):
    """One write transaction taken with ``BEGIN IMMEDIATE``.

    IMMEDIATE takes the write lock up front, so a transaction that reads first (the
    version check) cannot fail later with SQLITE_BUSY_SNAPSHOT when another process
    committed in between; ``busy_timeout`` then covers the wait for the lock.

    A COMMIT that fails (a deferred constraint, SQLITE_BUSY, a full disk) leaves SQLite
    inside the transaction: it is rolled back too. Left open, every later BEGIN failed
    ("cannot start a transaction within a transaction") and the webhook answered 500
    for ever.

    ``db`` is a sqlite_utils.Database or a plain sqlite3 connection (the gate's tables,
    ``mqttd.store.accounts``), either in autocommit mode.
    """
    conn = db if isinstance(db, sqlite3.Connection) else db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_version(db):
    return db.execute("PRAGMA user_version").fetchone()[0]


def refuse_too_new(db, migrations=MIGRATIONS, name="database"):
    """The file's schema version; SchemaTooNew if it is newer than ``migrations`` know.

    Read-only. Call it before anything that changes the file (even ``PRAGMA
    journal_mode = WAL`` rewrites its header and creates -wal/-shm files), so a
    database from a newer mqttd is left exactly as it was.
    """
    current = user_version(db)
    latest = len(migrations)
    if current > latest:
        raise SchemaTooNew(
            f"{name}: schema version {current} is newer than this mqttd knows "
            f"(latest {latest}); refusing to start. Upgrade mqttd, or restore a "
            f"backup made by this version."
        )
    return current


def migrate(db, migrations=MIGRATIONS, name="database"):
    """Bring ``db`` (a sqlite_utils.Database) to ``len(migrations)``; return (old, new).

    Raises SchemaTooNew, without writing, if the file is newer than ``migrations`` know.
    """
    latest = len(migrations)
    with immediate(db):
        current = refuse_too_new(db, migrations, name)
        for step in migrations[current:]:
            step(db)
        if current != latest:
            # PRAGMA takes no parameters; latest is an int we computed.
            db.execute(f"PRAGMA user_version = {int(latest)}")
    return current, latest
