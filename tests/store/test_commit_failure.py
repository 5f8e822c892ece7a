"""A COMMIT that fails is rolled back: the next commits work (issue 11, point 9).

SQLite leaves the connection inside the transaction when COMMIT itself fails (here a
deferred foreign key, checked only at COMMIT, as SQLITE_BUSY or a full disk would be).
Left open, every later BEGIN failed and the webhook answered 500 for ever.
"""
import sqlite3

from twisted.internet import defer, reactor

from mqttd.ingest.writer import BatchWriter
from tests.support.store import StoreTestCase, row

POISON = b"\xde\xad"


def poison_commits(db):
    """A user's schema objects that make any COMMIT holding a POISON payload fail."""
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE poison (ref INTEGER REFERENCES parent (id) "
               "DEFERRABLE INITIALLY DEFERRED)")
    db.execute(f"CREATE TRIGGER poison_commit AFTER INSERT ON messages "
               f"WHEN new.payload = x'{POISON.hex()}' BEGIN INSERT INTO poison VALUES (1); END")


class CommitFailureTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_later_commits_succeed_after_a_failed_commit(self):
        store = self.open_store()
        yield store.start()
        yield store.run(poison_commits)
        # Two batches: BEGIN IMMEDIATE, two INSERTs, and the COMMIT fails.
        failure = yield self.assertFailure(
            store.insert_batches([[row("a")], [row("b", payload=POISON)]]),
            sqlite3.IntegrityError)
        self.assertIn("FOREIGN KEY", str(failure))
        self.assertFalse((yield store.run(lambda db: db.conn.in_transaction)))
        self.assertEqual((yield store.count()), 0)
        self.assertEqual((yield store.insert_batches([[row("c")], [row("d")]])), [1, 1])
        self.assertEqual((yield store.insert_batch([row("e")])), 1)
        keys = self.raw(store).execute("SELECT key FROM messages ORDER BY key").fetchall()
        self.assertEqual(keys, [("c",), ("d",), ("e",)])

    @defer.inlineCallbacks
    def test_the_writer_answers_again_after_a_failed_commit(self):
        store = self.open_store()
        yield store.start()
        yield store.run(poison_commits)
        writer = BatchWriter(reactor, store, flush_interval=5.0)
        self.addCleanup(writer.close)
        failed = writer.submit([row("a")])
        poisoned = writer.submit([row("b", payload=POISON)])
        yield self.assertFailure(failed, sqlite3.IntegrityError)
        yield self.assertFailure(poisoned, sqlite3.IntegrityError)
        self.flushLoggedErrors(sqlite3.IntegrityError)
        self.assertEqual((yield defer.gatherResults([writer.submit([row("c")]),
                                                     writer.submit([row("d")])])), [1, 1])
        self.assertEqual((writer.metrics.ingest_commit_failures, writer.metrics.ingest_commits), (1, 1))
