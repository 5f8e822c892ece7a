"""sessions-<slot>.db: one broker's persistent sessions, and how they are rebuilt.

Each broker process (slot 0 in single-process mode, 1..N for the workers of the tree)
writes its own file, so no two processes ever wait for one lock, nor for the ingest
writer's: sessions stick to a worker by client id. Written on a one-thread pool like
``mqttd.store.sqlite`` (a sqlite3 connection belongs to its thread).

What is kept per persistent session: its subscriptions, the packet ids of its
deliveries in flight (so a reconnect resends them with DUP=1 and the same ids, and a
PUBREC'd QoS 2 message only gets its PUBREL again), and a CURSOR into mqttd.db's
``messages`` (a rowid, which is commit order): every QoS 1/2 message after the cursor
that matches the subscriptions is owed to the session, unless it is one of the
deliveries in flight. The queue itself is never written: ``messages`` already holds
every message, committed before it was routed, so a message PUBACKed to its publisher
the instant before a crash is still owed to an offline subscriber afterwards.

The cursor a save writes (``_save``) is the lowest of: the last rowid of ``messages``
read BEFORE the broker took its snapshot (anything committed after it is after the
cursor), and the rowid before the oldest message still queued for the session. Acked
messages are only the ones that leave the snapshot, so the cursor never passes a
message the session still holds.
"""
import os
import sqlite3

import attrs

from mqttd.namespace import MOUNT_ROOT, mounted
from mqttd.store.pool import OnOwnPool
from mqttd.store.retained import load_retained
from mqttd.store.schema import migrate, refuse_too_new
from mqttd.store.sink import Message, row_message
from mqttd.store.sqlite import create_private

__all__ = ["SessionsDb", "SessionSave", "InflightRow", "StoredSession", "Loaded",
           "connect_sessions", "sessions_filename"]

_CHUNK = 500  # values per IN (...)


def sessions_filename(slot):
    return f"sessions-{int(slot)}.db"


def connect_sessions(path, busy_timeout_ms=5000):
    """A sqlite3 connection (autocommit) to the sessions file at ``path``, created 0600
    if missing and brought to the current schema (SchemaTooNew, untouched, if newer)."""
    from sqlite_utils import Database
    create_private(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        db = Database(conn, execute_plugins=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        refuse_too_new(db, MIGRATIONS, name=path)
        db.enable_wal()
        # FULL: a SUBACK waits for this commit, as a PUBACK waits for mqttd.db's.
        conn.execute("PRAGMA synchronous = FULL")
        migrate(db, MIGRATIONS, name=path)
    except BaseException:
        conn.close()
        raise
    return conn


def _v1_sessions(db):
    db.execute("""
        CREATE TABLE sessions (
            client_id     TEXT    NOT NULL PRIMARY KEY,
            cursor        INTEGER NOT NULL,
            offline_since REAL,
            saved_at      REAL    NOT NULL
        ) STRICT""")
    db.execute("""
        CREATE TABLE subscriptions (
            client_id TEXT    NOT NULL,
            filter    TEXT    NOT NULL,
            qos       INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
            PRIMARY KEY (client_id, filter)
        ) STRICT, WITHOUT ROWID""")
    db.execute("""
        CREATE TABLE inflight (
            client_id TEXT    NOT NULL,
            packet_id INTEGER NOT NULL CHECK (packet_id BETWEEN 1 AND 65535),
            seq       INTEGER NOT NULL,
            key       TEXT,
            qos       INTEGER NOT NULL CHECK (qos BETWEEN 1 AND 2),
            retain    INTEGER NOT NULL CHECK (retain BETWEEN 0 AND 1),
            pubrel    INTEGER NOT NULL CHECK (pubrel BETWEEN 0 AND 1),
            PRIMARY KEY (client_id, packet_id)
        ) STRICT, WITHOUT ROWID""")


MIGRATIONS = (_v1_sessions,)
"""The sessions file's own schema steps (its own ``user_version``); add, never edit."""


@attrs.frozen
class InflightRow:
    """One delivery in flight: ``key`` of its message (None for a PUBREL whose message
    key was not known), ``pubrel``: its PUBREC arrived, only PUBREL/PUBCOMP remain."""

    packet_id: int
    key: str | None
    qos: int
    retain: bool
    pubrel: bool


@attrs.frozen
class SessionSave:
    """What a save writes for one session (built by the broker on the reactor)."""

    client_id: str
    offline_since: float | None
    subscriptions: tuple  # ((filter, qos), ...)
    queued_keys: tuple  # keys of the messages queued for it (not retained ones)
    inflight: tuple  # InflightRow, in send order
    floor: int | None = None  # offline: a rowid read once it went offline (see _cursor)


@attrs.frozen
class StoredSession:
    """A session as loaded: ``inflight`` is ((row, Message or None), ...) in send
    order, ``queue`` ((Message, qos), ...) in commit order."""

    client_id: str
    offline_since: float
    subscriptions: tuple
    inflight: tuple
    queue: tuple
    queued_bytes: int
    dropped: int  # owed messages past max_queued_messages / bytes
    cursor: int = 0  # as saved: an offline session's cursor stays there


@attrs.frozen
class Loaded:
    retained: tuple  # Message, retain=True
    sessions: tuple  # StoredSession, oldest offline first
    expired: int


class SessionsDb(OnOwnPool):
    """The sessions file of one broker, and a read-only view of mqttd.db beside it.

    ``messages_path`` is mqttd.db, which must exist (prepared by the ingest tier); None:
    nothing to rebuild queues or the retained set from. ``threadpool`` defaults to a one-thread pool of its own.
    """

    def __init__(self, reactor, path, messages_path=None, threadpool=None, busy_timeout=5.0):
        super().__init__(reactor, path, threadpool, "mqttd-sessions")
        self.messages_path = messages_path
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._conn = None  # on the pool's thread only
        self._messages = None

    # -- on the pool's thread ---------------------------------------------------------

    def _open(self):
        self._conn = conn = connect_sessions(self.path, self._busy_timeout_ms)
        path = self.messages_path
        if path is not None:
            if not os.path.exists(path):
                # Cursors written without it would all be 0: every message ever stored
                # owed again after a crash. The ingest tier prepares it first.
                conn.close()
                self._conn = None
                raise FileNotFoundError(f"{path}: mqttd.db is not there yet; prepare it "
                                        f"(mqttd.ingest.service.prepare_database) first")
            # Read only: the ingest writer is mqttd.db's one writer; a WAL reader never
            # blocks it (nor waits for it).
            self._messages = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                             isolation_level=None)
            self._messages.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    def _close(self):
        for conn in (self._conn, self._messages):
            if conn is not None:
                conn.close()
        self._conn = self._messages = None

    # -- saves --------------------------------------------------------------------------

    def last_rowid(self):
        """Deferred: the newest rowid of ``messages`` now (0 if none or no database).
        Read BEFORE a snapshot: what commits later is after it."""
        return self._run(self._last_rowid)

    def _last_rowid(self):
        if self._messages is None:
            return 0
        return self._messages.execute("SELECT max(rowid) FROM messages").fetchone()[0] or 0

    def save(self, last_rowid, saves, removed, now):
        """Write ``saves`` (SessionSave) and delete the ``removed`` client ids, in ONE
        transaction; Deferred fired with the cursors written (one per save) once it is
        committed."""
        return self._run(self._save, last_rowid, saves, removed, now)

    def _save(self, last_rowid, saves, removed, now):
        conn = self._conn
        cursors = [self._cursor(last_rowid, save.queued_keys, save.floor) for save in saves]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for client_id in removed:
                _delete(conn, client_id)
            for save, cursor in zip(saves, cursors):
                client_id = save.client_id
                _delete(conn, client_id)
                conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                             (client_id, cursor, save.offline_since, now))
                conn.executemany("INSERT INTO subscriptions VALUES (?, ?, ?)",
                                 [(client_id, f, q) for f, q in save.subscriptions])
                conn.executemany(
                    "INSERT INTO inflight VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(client_id, row.packet_id, seq, row.key, row.qos, int(row.retain),
                      int(row.pubrel)) for seq, row in enumerate(save.inflight)])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return cursors

    def _cursor(self, last_rowid, queued_keys, floor=None):
        """An offline session's cursor never passes ``floor``, a rowid read just after
        it went offline: what commits later may still be on its way from another worker
        (or behind a slow answer) when this save reads ``last_rowid``."""
        cursor = last_rowid if floor is None else min(last_rowid, floor)
        if queued_keys and self._messages is not None:
            oldest = None
            for chunk in _chunks(list(queued_keys)):
                (low,) = self._messages.execute(
                    f"SELECT min(rowid) FROM messages WHERE key IN ({_marks(chunk)})",
                    chunk).fetchone()
                if low is not None and (oldest is None or low < oldest):
                    oldest = low
            if oldest is not None:
                cursor = min(cursor, oldest - 1)
        return cursor

    # -- load -------------------------------------------------------------------------------

    def load(self, now, expiry, max_queued_messages, max_queued_bytes, make_matcher):
        """Deferred Loaded: the retained set, and every session not expired with its
        queue rebuilt from ``messages`` (expired ones are deleted).

        ``make_matcher(((client_id, subscriptions), ...))`` returns ``match(topic) ->
        {client_id: granted qos}`` (the broker's own topic rules; this tier has none).
        """
        return self._run(self._load, now, expiry, max_queued_messages, max_queued_bytes,
                         make_matcher)

    def _load(self, now, expiry, max_queued, max_bytes, make_matcher):
        conn = self._conn
        rows = conn.execute(
            "SELECT client_id, cursor, offline_since FROM sessions").fetchall()
        expired = [cid for cid, _, since in rows if since is not None and since + expiry <= now]
        if expired:
            conn.execute("BEGIN IMMEDIATE")
            for cid in expired:
                _delete(conn, cid)
            conn.execute("COMMIT")
        gone = set(expired)
        live = [(cid, cursor, now if since is None else since)
                for cid, cursor, since in rows if cid not in gone]
        subscriptions = {cid: [] for cid, _, _ in live}
        for cid, topic_filter, qos in conn.execute("SELECT * FROM subscriptions"):
            if cid in subscriptions:
                subscriptions[cid].append((topic_filter, qos))
        inflight = {cid: [] for cid, _, _ in live}
        for cid, pid, _, key, qos, retain, pubrel in conn.execute(
                "SELECT * FROM inflight ORDER BY client_id, seq"):
            if cid in inflight:
                inflight[cid].append(InflightRow(pid, key, qos, bool(retain), bool(pubrel)))
        messages = self._messages
        retained = ()
        owed = {cid: [] for cid, _, _ in live}
        dropped = dict.fromkeys(owed, 0)
        by_key = {}
        cursors = {cid: cursor for cid, cursor, _ in live}
        if messages is not None:
            retained = tuple(
                Message(key, "", None, topic, payload, qos, True, updated_at)
                for topic, payload, qos, key, updated_at in load_retained(messages))
            keys = {row.key for rows_ in inflight.values() for row in rows_ if row.key}
            by_key = self._messages_by("key", list(keys))
            match = make_matcher([(cid, tuple(subs)) for cid, subs in subscriptions.items()])
            self._scan_owed(messages, _account_column(messages), cursors, inflight, match,
                            owed, dropped, max_queued, max_bytes)
        by_rowid = self._messages_by("rowid", [r for rows_ in owed.values() for r, _ in rows_])
        sessions = []
        for cid, _, since in sorted(live, key=lambda item: item[2]):
            queue = tuple((by_rowid[rowid], qos) for rowid, qos in owed[cid]
                          if rowid in by_rowid)
            sessions.append(StoredSession(
                cid, since, tuple(subscriptions[cid]),
                tuple((row, by_key.get(row.key)) for row in inflight[cid]),
                queue, sum(len(m.payload) + len(m.topic) for m, _ in queue), dropped[cid],
                cursors[cid]))
        return Loaded(retained, tuple(sessions), len(expired))

    @staticmethod
    def _scan_owed(messages, account, cursors, inflight, match, owed, dropped, max_queued,
                   max_bytes):
        """Walk ``messages`` after the lowest cursor once, for every session at once,
        and note (rowid, delivered qos) of what each is owed, bounded like a live queue
        (the NEWEST owed messages are the ones dropped, as live queues drop). A row is
        matched as the broker routed it: its topic mounted in its ``account`` (the
        column's expression), which the sizes count too, as the broker's queues do."""
        if not cursors:
            return
        skip = {cid: {row.key for row in rows} for cid, rows in inflight.items()}
        sizes = dict.fromkeys(cursors, 0)
        start = min(cursors.values())
        for rowid, key, topic, qos, size, owner in messages.execute(
                "SELECT rowid, key, topic, qos, length(payload) + length(topic), "
                f"{account} FROM messages WHERE rowid > ? AND qos > 0 ORDER BY rowid",
                (start,)):
            if owner is not None:
                topic = mounted(owner, topic)
                size += len(MOUNT_ROOT) + len(owner) + 1
            for cid, granted in match(topic).items():
                if not granted or rowid <= cursors[cid] or key in skip[cid]:
                    continue
                queue = owed[cid]
                if len(queue) >= max_queued or (queue and sizes[cid] + size > max_bytes):
                    dropped[cid] += 1
                    continue
                queue.append((rowid, qos if qos < granted else granted))
                sizes[cid] += size

    def _messages_by(self, column, values):
        """{value: Message} for the rows of ``messages`` whose ``column`` is in ``values``."""
        found = {}
        if self._messages is None:
            return found
        account = _account_column(self._messages)
        for chunk in _chunks(values):
            for row in self._messages.execute(
                    f"SELECT {column}, key, client_id, username, topic, payload, qos, retain, "
                    f"received_at, {account} FROM messages WHERE {column} IN "
                    f"({_marks(chunk)})", chunk):
                found[row[0]] = row_message(*row[1:])
        return found

    def read(self, sql, *params):
        """Deferred rows of a read of the sessions file (tests, tooling)."""
        return self._run(lambda: self._conn.execute(sql, params).fetchall())


def _account_column(messages):
    """``account``, or NULL for a ``messages`` table from before schema step 4 (read
    here before the ingest tier migrated it: every row of it has no account)."""
    columns = {name for _, name, *_ in messages.execute("PRAGMA table_info(messages)")}
    return "account" if "account" in columns else "NULL"


def _delete(conn, client_id):
    for table in ("sessions", "subscriptions", "inflight"):
        conn.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,))


def _chunks(values):
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _marks(chunk):
    return ", ".join("?" * len(chunk))

