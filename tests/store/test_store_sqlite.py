"""SqliteStore: real SQLite files in a temp dir; schema, migrations, idempotent batches.

Most tests run the store on its REAL one-thread pool and the real reactor (trial waits
on the returned Deferreds). The synchronous ``InlineReactor`` / ``InlinePool`` stand-ins
and the ``row()`` / ``message()`` builders are in tests/support/store.py.
"""
import os
import sqlite3
import threading
import time

from twisted.internet import defer, reactor

from mqttd.store import sqlite
from mqttd.ingest.service import prepare_database
from mqttd.store.schema import MIGRATIONS, SchemaTooNew, migrate
from mqttd.store.sqlite import DB_FILENAME, ROW, SqliteStore, StoreClosed, message_row
from tests.support.store import (
    InlinePool,
    InlineReactor,
    StoreTestCase,
    fired,
    inline_store,
    make_dir,
    message,
    row,
)


class SchemaTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_fresh_database_gets_latest_version_wal_and_full_sync(self):
        store = self.open_store()
        yield store.start()
        self.assertEqual(store.path, os.path.join(self.data_dir, DB_FILENAME))
        version, journal, sync, temp = yield store.run(lambda db: (
            db.execute("PRAGMA user_version").fetchone()[0],
            db.journal_mode,
            db.execute("PRAGMA synchronous").fetchone()[0],
            db.execute("PRAGMA temp_store").fetchone()[0],
        ))
        self.assertEqual(version, len(MIGRATIONS))
        self.assertEqual(journal, "wal")
        self.assertEqual(sync, 2)  # FULL
        # Statement journals in memory, not a temporary file created per commit.
        self.assertEqual(temp, 2)  # MEMORY

    @defer.inlineCallbacks
    def test_synchronous_is_configurable(self):
        for name, value in (("NORMAL", 1), ("OFF", 0)):
            store = self.open_store(synchronous=name)
            yield store.start()
            sync = yield store.run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
            self.assertEqual(sync, value)
            yield store.close()

    def test_unknown_synchronous_refused(self):
        with self.assertRaises(ValueError):
            SqliteStore(reactor, "x.db", synchronous="EXTRA")

    @defer.inlineCallbacks
    def test_messages_contract(self):
        """The columns, key and index users query are there with the documented types."""
        store = self.open_store()
        yield store.start()
        conn = self.raw(store)
        columns = {row[1]: (row[2], row[5]) for row in conn.execute("PRAGMA table_info(messages)")}
        self.assertEqual(columns, {
            "key": ("TEXT", 1), "client_id": ("TEXT", 0), "username": ("TEXT", 0),
            "topic": ("TEXT", 0), "payload": ("BLOB", 0), "qos": ("INTEGER", 0),
            "retain": ("INTEGER", 0), "received_at": ("REAL", 0), "committed_at": ("REAL", 0),
            "account": ("TEXT", 0),
        })
        index = [row[2] for row in conn.execute("PRAGMA index_info(messages_client_received)")]
        self.assertEqual(index, ["client_id", "received_at"])
        index = [row[2] for row in conn.execute("PRAGMA index_info(messages_account_received)")]
        self.assertEqual(index, ["account", "received_at"])

    @defer.inlineCallbacks
    def test_future_version_refused_without_writing(self):
        data_dir = make_dir(self)
        path = os.path.join(data_dir, DB_FILENAME)
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        conn.close()
        with open(path, "rb") as f:
            before = f.read()
        store = SqliteStore(reactor, path)
        yield self.assertFailure(store.start(), SchemaTooNew)
        # Untouched, not even switched to WAL (no -wal/-shm files).
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(data_dir), [DB_FILENAME])
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS) + 1)
        self.assertEqual(conn.execute("SELECT name FROM sqlite_master").fetchall(), [])
        # Not running: later calls fail clearly instead of hanging.
        yield self.assertFailure(store.count(), StoreClosed)

    def test_future_version_error_says_what_to_do(self):
        data_dir = make_dir(self)
        path = os.path.join(data_dir, DB_FILENAME)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        store = SqliteStore(InlineReactor(), path, threadpool=InlinePool())
        failure = self.failureResultOf(store.start(), SchemaTooNew)
        message = failure.getErrorMessage()
        self.assertIn("schema version 99 is newer", message)
        self.assertIn("refusing to start", message)

    @defer.inlineCallbacks
    def test_steps_apply_in_order_to_an_older_database(self):
        store = self.open_store()
        yield store.start()
        yield store.insert_batch([row("k1")])
        yield store.close()

        def v2_add_source(db):
            db.execute("ALTER TABLE messages ADD COLUMN source TEXT")

        def v3_fill_source(db):
            db.execute("UPDATE messages SET source = 'v3'")

        store = SqliteStore(reactor, store.path,
                            migrations=MIGRATIONS + (v2_add_source, v3_fill_source))
        self.addCleanup(store.close)
        yield store.start()
        version, rows = yield store.run(lambda db: (
            db.execute("PRAGMA user_version").fetchone()[0],
            db.execute("SELECT key, source FROM messages").fetchall(),
        ))
        self.assertEqual(version, len(MIGRATIONS) + 2)
        self.assertEqual(rows, [("k1", "v3")])

    @defer.inlineCallbacks
    def test_v1_database_migrates_to_v2_with_every_row_and_the_same_rules(self):
        """v2 rebuilds the table with cheaper CHECKs: rows, index and the rules a row
        must meet are what they were in v1."""
        store = self.open_store(migrations=MIGRATIONS[:1])
        yield store.start()
        # Rows as the v1 mqttd wrote them (this store writes step 4's account too).
        conn = self.raw(store)
        with conn:
            conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, 9.0)", [
                row(f"k{i}", client_id=f"dev-{i % 3}", payload=bytes([i]), qos=i % 3,
                    retain=i % 2, received_at=float(i))[:-1] for i in range(50)])
        before = self.raw(store).execute("SELECT * FROM messages ORDER BY key").fetchall()
        yield store.close()

        store = SqliteStore(reactor, store.path)
        self.addCleanup(store.close)
        yield store.start()
        conn = self.raw(store)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        after = conn.execute("SELECT * FROM messages ORDER BY key").fetchall()
        # Step 4 added ``account`` (NULL for rows written before accounts existed).
        self.assertEqual([r[:-1] for r in after], before)
        self.assertEqual({r[-1] for r in after}, {None})
        self.assertEqual(
            [r[2] for r in conn.execute("PRAGMA index_info(messages_client_received)")],
            ["client_id", "received_at"])
        self.assertEqual(conn.execute("SELECT name FROM sqlite_master WHERE name LIKE "
                                      "'%v2%'").fetchall(), [])
        for bad in (row(""), row("q", qos=3), row("q", qos=-1), row("r", retain=2),
                    row("t", payload="text")):
            yield self.assertFailure(store.insert_batch([bad]), sqlite3.IntegrityError)
        self.assertEqual((yield store.count()), 50)

    def v1_database_with(self, *user_sql):
        """A database as the v1 mqttd left it, one row in it, plus the user's own objects."""
        from sqlite_utils import Database
        path = os.path.join(self.mktemp(), "mqttd.db")
        os.makedirs(os.path.dirname(path))
        db = Database(path)
        migrate(db, MIGRATIONS[:1])
        db.execute("INSERT INTO messages VALUES ('a', 'dev-1', NULL, 't/1', x'00', 1, 0, 1.0, 2.0)")
        for sql in user_sql:
            db.execute(sql)
        db.conn.commit()
        db.close()
        return path

    def test_v2_keeps_a_users_view_on_messages(self):
        """SQLite's RENAME re-checks every view; one on ``messages`` made the migration,
        and so every start of the upgraded mqttd, fail."""
        path = self.v1_database_with("CREATE VIEW latest AS SELECT key, topic FROM messages")
        prepare_database(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(conn.execute("SELECT key, topic FROM latest").fetchall(), [("a", "t/1")])
        self.assertEqual(conn.execute("PRAGMA legacy_alter_table").fetchone()[0], 0)

    def test_v2_keeps_a_users_index_and_trigger_on_messages(self):
        path = self.v1_database_with(
            "CREATE INDEX messages_by_topic ON messages (topic)",
            "CREATE TABLE audit (k TEXT)",
            "CREATE TRIGGER audit_insert AFTER INSERT ON Messages "
            "BEGIN INSERT INTO audit VALUES (new.key); END")
        prepare_database(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(
            [r[2] for r in conn.execute("PRAGMA index_info(messages_by_topic)")], ["topic"])
        conn.execute("INSERT INTO messages VALUES "
                     "('b', 'dev-1', NULL, 't/2', x'01', 1, 0, 3.0, 4.0, NULL)")
        self.assertEqual(conn.execute("SELECT k FROM audit").fetchall(), [("b",)])
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")

    def test_v1_and_v2_checks_accept_the_same_rows(self):
        from mqttd.store.schema import _v1_messages, _MESSAGES_V2
        from sqlite_utils import Database
        accepted = []
        for create in (_v1_messages, lambda db: db.execute(_MESSAGES_V2.format(name="messages"))):
            db = Database(memory=True)
            create(db)
            ok = set()
            for key in ("", "k"):
                for qos in range(-2, 5):
                    for retain in range(-2, 4):
                        try:
                            db.execute("INSERT INTO messages VALUES (?, 'c', NULL, 't', x'00', "
                                       "?, ?, 1.0, 2.0)", (f"{key}{qos}{retain}" if key else "",
                                                           qos, retain))
                            ok.add((key, qos, retain))
                        except sqlite3.IntegrityError:
                            pass
            accepted.append(ok)
        self.assertEqual(accepted[0], accepted[1])
        self.assertEqual(accepted[0], {("k", q, r) for q in (0, 1, 2) for r in (0, 1)})

    @defer.inlineCallbacks
    def test_failing_step_rolls_back_every_step(self):
        def broken(db):
            db.execute("CREATE TABLE half_done (x)")
            raise RuntimeError("step failed")

        store = self.open_store(migrations=MIGRATIONS + (broken,))
        yield self.assertFailure(store.start(), RuntimeError)
        conn = self.raw(store)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 0)
        self.assertEqual(conn.execute("SELECT name FROM sqlite_master").fetchall(), [])


class WriteTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_runs_on_its_own_thread(self):
        store = self.open_store()
        yield store.start()
        ident = yield store.run(lambda db: threading.get_ident())
        self.assertNotEqual(ident, threading.get_ident())

    @defer.inlineCallbacks
    def test_retried_batch_never_duplicates(self):
        store = self.open_store()
        yield store.start()
        batch = [row("k1"), row("k2"), row("k3")]
        self.assertEqual((yield store.insert_batch(batch)), 3)
        self.assertEqual((yield store.insert_batch(batch)), 0)
        # A retry that overlaps only partly stores only the new key.
        self.assertEqual((yield store.insert_batch([row("k3"), row("k4")])), 1)
        self.assertEqual((yield store.count()), 4)
        keys = self.raw(store).execute("SELECT key FROM messages ORDER BY key").fetchall()
        self.assertEqual(keys, [("k1",), ("k2",), ("k3",), ("k4",)])

    @defer.inlineCallbacks
    def test_same_key_twice_in_one_batch_is_one_row(self):
        """The same message twice is one row; the same key with other contents is a
        KeyConflict (tests/ingest/test_key_conflicts.py), and nothing of its batch is stored."""
        store = self.open_store()
        yield store.start()
        self.assertEqual((yield store.insert_batch([row("k", payload=b"a"),
                                                    row("k", payload=b"a")])), 1)
        yield self.assertFailure(store.insert_batch([row("j"), row("k2", payload=b"a"),
                                                     row("k2", payload=b"b")]),
                                 sqlite.KeyConflict)
        rows = self.raw(store).execute("SELECT key, payload FROM messages").fetchall()
        self.assertEqual(rows, [("k", b"a")])

    @defer.inlineCallbacks
    def test_payload_bytes_exact(self):
        store = self.open_store()
        yield store.start()
        payloads = [b"\x00\xff", b"", bytes(range(256)), b"\xc3\x28 not utf-8", b"a\x00b"]
        yield store.insert_batch(
            [row(f"k{i}", payload=p, received_at=float(i)) for i, p in enumerate(payloads)]
        )
        rows = self.raw(store).execute(
            "SELECT payload, typeof(payload) FROM messages ORDER BY received_at"
        ).fetchall()
        self.assertEqual(rows, [(p, "blob") for p in payloads])
        back = yield store.recent("dev-1", limit=10)
        self.assertEqual([m.payload for m in back], payloads[::-1])

    @defer.inlineCallbacks
    def test_a_bad_row_fails_the_whole_batch(self):
        """A constraint violation is not silently skipped (as INSERT OR IGNORE would):
        the transaction fails and none of the batch is stored."""
        store = self.open_store()
        yield store.start()
        batch = [row("ok1"), row("ok2"), row("bad", qos=7)]
        yield self.assertFailure(store.insert_batch(batch), sqlite3.IntegrityError)
        self.assertEqual((yield store.count()), 0)
        # The connection is usable afterwards.
        self.assertEqual((yield store.insert_batch(batch[:2])), 2)

    @defer.inlineCallbacks
    def test_a_bad_row_in_a_later_statement_fails_the_whole_batch(self):
        """460 rows take four statements in one transaction (256 + 128 + 64 + 12); a bad
        row in the last one rolls back the first three as well."""
        store = self.open_store()
        yield store.start()
        self.assertEqual(len(list(sqlite._chunks(460))), 4)
        batch = [row(f"ok{i}") for i in range(459)] + [row("bad", retain=3)]
        yield self.assertFailure(store.insert_batch(batch), sqlite3.IntegrityError)
        yield self.assertFailure(store.insert_batches([batch[:10], batch[450:]]),
                                 sqlite3.IntegrityError)
        self.assertEqual((yield store.count()), 0)
        self.assertEqual((yield store.insert_batch(batch[:-1])), 459)

    @defer.inlineCallbacks
    def test_one_statement_batch_is_its_own_transaction(self):
        """A batch that fits one INSERT runs without BEGIN/COMMIT (the connection is in
        autocommit mode) and is still committed when the call returns: a second
        connection sees it at once. Empty batches beside it count 0."""
        store = self.open_store()
        yield store.start()
        statements = []
        yield store.run(lambda db: db.conn.set_trace_callback(statements.append))
        counts = yield store.insert_batches([[], [row(f"one{i}") for i in range(64)], []])
        self.assertEqual(counts, [0, 64, 0])
        self.assertEqual(len(statements), 1)
        self.assertTrue(statements[0].startswith("INSERT INTO messages"))
        self.assertEqual(self.raw(store).execute("SELECT count(*) FROM messages").fetchone(),
                         (64,))
        # Two batches need two counts, hence two statements in one transaction.
        del statements[:]
        self.assertEqual((yield store.insert_batches([[row("a")], [row("b")]])), [1, 1])
        self.assertEqual([s.split()[0] for s in statements], ["BEGIN", "INSERT", "INSERT",
                                                              "COMMIT"])
        yield store.run(lambda db: db.conn.set_trace_callback(None))

    @defer.inlineCallbacks
    def test_rows_of_the_wrong_length_fail_the_batch(self):
        """One parameter tuple per statement must not let a short row and a long row
        (7 + 9 values = 2 x 8) bind shifted columns: the batch fails, nothing stored."""
        store = self.open_store()
        yield store.start()
        short, long = row("a")[:-1], row("b") + (9.0,)
        yield self.assertFailure(store.insert_batch([row("ok"), short, long]), ValueError)
        yield self.assertFailure(store.insert_batches([[row("ok")], [short]]), ValueError)
        self.assertEqual((yield store.count()), 0)

    @defer.inlineCallbacks
    def test_text_payload_refused(self):
        store = self.open_store()
        yield store.start()
        yield self.assertFailure(store.insert_batch([row("k", payload="text")]),
                                 sqlite3.IntegrityError)
        self.assertEqual((yield store.count()), 0)

    @defer.inlineCallbacks
    def test_insert_batches_counts_each_batch_in_one_commit(self):
        store = self.open_store()
        yield store.start()
        yield store.insert_batch([row("old")])
        counts = yield store.insert_batches([[row("a"), row("old")], [], [row("b")]])
        self.assertEqual(counts, [1, 0, 1])
        committed = self.raw(store).execute(
            "SELECT DISTINCT committed_at FROM messages WHERE key IN ('a', 'b')").fetchall()
        self.assertEqual(len(committed), 1)

    @defer.inlineCallbacks
    def test_batches_of_every_size_around_the_statement_sizes(self):
        """Batches are cut into multi-row INSERTs of 256, 128, 64 and 1..64 rows: every
        size stores every row once and counts retried keys as old, wherever they fall."""
        store = self.open_store()
        yield store.start()
        sizes = [1, 2, 3, 7, 63, 64, 65, 127, 128, 129, 192, 255, 256, 257, 600]
        batches = [[row(f"s{n}-{i}", received_at=float(i)) for i in range(n)] for n in sizes]
        self.assertEqual((yield store.insert_batches(batches)), sizes)
        self.assertEqual((yield store.count()), sum(sizes))
        # A retry that mixes stored keys (at both ends of a statement) with new ones.
        retry = batches[-1][250:300] + [row(f"new-{i}") for i in range(5)] + batches[-1][:1]
        self.assertEqual((yield store.insert_batch(retry)), 5)
        self.assertEqual((yield store.count()), sum(sizes) + 5)

    def test_statement_pieces_cover_a_batch_exactly(self):
        for count in range(0, 1100):
            pieces = list(sqlite._chunks(count))
            self.assertEqual(sum(size for _, size in pieces), count)
            self.assertEqual([start for start, _ in pieces],
                             [sum(size for _, size in pieces[:i]) for i in range(len(pieces))])
            self.assertTrue(all(size in sqlite._INSERTS for _, size in pieces))
            self.assertLessEqual(len(pieces), count // 256 + 3)
            if 0 < count <= 64:
                self.assertEqual(pieces, [(0, count)])

    def test_committed_at_and_fields_recorded(self):
        store, clock, _ = inline_store(self)
        clock.advance(1234.5)
        m = message("k", client_id="dev-9", username=None, topic="a/b", qos=2, retain=True,
                    received_at=1000.25)
        self.assertEqual(fired(store.insert_batch([message_row(m)])), 1)
        row = fired(store.run(lambda db: db.execute("SELECT * FROM messages").fetchone()))
        self.assertEqual(row, ("k", "dev-9", None, "a/b", b"p", 2, 1, 1000.25, 1234.5, None))
        self.assertEqual(fired(store.recent("dev-9")), [m])

    @defer.inlineCallbacks
    def test_committed_at_is_the_commit_wall_clock_once_per_commit(self):
        """On the real reactor committed_at is unix seconds taken at the commit, and all
        rows of one transaction (several batches) share it."""
        store = self.open_store()
        yield store.start()
        before = time.time()
        yield store.insert_batches([[row(f"a{i}") for i in range(300)], [row("b")]])
        after = time.time()
        stamps = self.raw(store).execute("SELECT DISTINCT committed_at FROM messages").fetchall()
        self.assertEqual(len(stamps), 1)
        self.assertTrue(before <= stamps[0][0] <= after, (before, stamps, after))
        self.assertEqual(type(stamps[0][0]), float)

    def test_rows_are_plain_tuples_in_row_order(self):
        """A row is bound as it is, value i into column ROW[i] (then committed_at)."""
        m = message("k", client_id="c", username="u", topic="t", payload=b"x", qos=2,
                    retain=True, received_at=3.5)
        self.assertEqual(message_row(m), ("k", "c", "u", "t", b"x", 2, True, 3.5, None))
        self.assertEqual(ROW, ("key", "client_id", "username", "topic", "payload", "qos",
                               "retain", "received_at", "account"))
        store, clock, _ = inline_store(self)
        clock.advance(9.0)
        fired(store.insert_batch([message_row(m)]))
        stored = fired(store.run(lambda db: db.execute(
            f"SELECT {', '.join(ROW)}, committed_at FROM messages").fetchone()))
        self.assertEqual(stored, ("k", "c", "u", "t", b"x", 2, 1, 3.5, None, 9.0))

    @defer.inlineCallbacks
    def test_recent_reads_one_device_newest_first_through_the_index(self):
        store = self.open_store()
        yield store.start()
        yield store.insert_batch(
            [row(f"a{i}", client_id="a", received_at=float(i)) for i in range(5)]
            + [row("b0", client_id="b", received_at=9.0)]
        )
        recent = yield store.recent("a", limit=3)
        self.assertEqual([m.key for m in recent], ["a4", "a3", "a2"])
        plan = yield store.run(lambda db: db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM messages WHERE client_id = ? "
            "ORDER BY received_at DESC LIMIT 3", ("a",)).fetchall())
        self.assertIn("messages_client_received", " ".join(str(row) for row in plan))

    @defer.inlineCallbacks
    def test_closed_store_refuses_work(self):
        store = self.open_store()
        yield store.start()
        yield store.close()
        yield store.close()  # idempotent
        yield self.assertFailure(store.insert_batch([row("k")]), StoreClosed)
