"""BatchWriter: group commit over a REAL SQLite file, timed with task.Clock.

The store's pool is the synchronous InlinePool (tests/support/store.py); with
``pool.hold = True`` a started commit waits in ``pool.jobs`` until the test runs it, so
"one commit at a time" and "answer only after COMMIT" are observable exactly. Rows are
tuples (``row()``), as the webhook's ``decode_batch`` hands them over.
"""
import sqlite3

from twisted.internet import task
from twisted.trial import unittest

from mqttd.ingest.writer import BatchWriter, QueueFull, WriterClosed
from tests.support.store import HeldPoolQueries, fired, inline_store, row


class WriterTestCase(HeldPoolQueries, unittest.TestCase):
    def make(self, batch_size=100, flush_interval=5.0, max_queue=1000,
             max_queue_bytes=1 << 30, **store_kwargs):
        self.store, self.clock, self.pool = inline_store(self, **store_kwargs)
        self.writer = BatchWriter(self.clock, self.store, batch_size=batch_size,
                                  flush_interval=flush_interval, max_queue=max_queue,
                                  max_queue_bytes=max_queue_bytes)
        return self.writer

    def rows(self, prefix, n):
        return [row(f"{prefix}{i}") for i in range(n)]



class FlushTests(WriterTestCase):
    def test_flush_on_size(self):
        writer = self.make(batch_size=3, flush_interval=1000.0)
        d1 = writer.submit(self.rows("a", 2))
        self.assertNoResult(d1)
        self.assertEqual(self.stored(), 0)
        d2 = writer.submit(self.rows("b", 1))  # 3 rows waiting: commit now, no timer
        self.assertEqual((fired(d1), fired(d2)), (2, 1))
        self.assertEqual(self.stored(), 3)
        self.assertEqual(writer.metrics.ingest_commits, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])  # the interval timer was cancelled

    def test_flush_on_interval(self):
        writer = self.make(batch_size=100, flush_interval=5.0)
        d = writer.submit(self.rows("a", 1))
        self.clock.advance(0.004)
        self.assertNoResult(d)
        self.assertEqual(self.stored(), 0)
        self.clock.advance(0.001)
        self.assertEqual(fired(d), 1)
        self.assertEqual(self.stored(), 1)

    def test_zero_interval_commits_at_once_and_groups_a_backlog(self):
        """flush_interval 0: a request arriving at an idle writer commits at once (no
        timer, no reactor turn); rows arriving while it runs form the next commit,
        which starts as soon as the running one ends (natural group commit)."""
        writer = self.make(batch_size=100, flush_interval=0.0)
        self.pool.hold = True
        first = writer.submit(self.rows("a-", 2))
        self.assertEqual(len(self.pool.jobs), 1)  # started inside submit
        self.assertEqual(self.clock.getDelayedCalls(), [])
        later = [writer.submit(self.rows(f"b{i}-", 1)) for i in range(4)]
        self.clock.advance(0)
        self.assertEqual(len(self.pool.jobs), 1)  # they wait for the running commit
        self.pool.run_next()
        self.assertEqual(fired(first), 2)
        self.assertEqual(len(self.pool.jobs), 1)  # the backlog went at once, together
        for d in later:
            self.assertNoResult(d)
        self.pool.run_next()
        for d in later:
            self.assertEqual(fired(d), 1)
        self.assertEqual(writer.metrics.ingest_commits, 2)
        self.assertEqual(writer.metrics.ingest_rows_committed, 6)

    def test_interval_counts_from_the_first_waiting_row(self):
        writer = self.make(batch_size=100, flush_interval=5.0)
        first = writer.submit(self.rows("a", 1))
        self.clock.advance(0.003)
        second = writer.submit(self.rows("b", 1))
        self.clock.advance(0.002)
        self.assertEqual((fired(first), fired(second)), (1, 1))
        self.assertEqual(writer.metrics.ingest_commits, 1)

    def test_requests_join_one_commit_and_each_learns_its_count(self):
        writer = self.make(batch_size=100)
        writer.submit([row("old")])
        self.clock.advance(0.005)
        self.assertEqual(writer.metrics.ingest_commits, 1)
        self.pool.hold = True
        ds = [writer.submit([row("x1"), row("old")]),
              writer.submit([row("y1")]),
              writer.submit([row("x1")])]  # same key as the first request: a retry
        self.clock.advance(0.005)
        self.assertEqual(len(self.pool.jobs), 1)  # one COMMIT for the three requests
        for d in ds:
            self.assertNoResult(d)
        self.pool.run_next()
        self.assertEqual([fired(d) for d in ds], [1, 1, 0])
        self.assertEqual(writer.metrics.ingest_commits, 2)
        self.assertEqual((writer.metrics.ingest_rows_committed, writer.metrics.ingest_rows_inserted), (5, 3))
        distinct = self.query(
            lambda db: db.execute("SELECT count(DISTINCT committed_at) FROM messages "
                                  "WHERE key IN ('x1', 'y1')").fetchone()[0])
        self.assertEqual(distinct, 1)

    def test_one_commit_at_a_time(self):
        writer = self.make(batch_size=2)
        self.pool.hold = True
        first = writer.submit(self.rows("a", 2))
        self.assertEqual(len(self.pool.jobs), 1)
        second = writer.submit(self.rows("b", 2))  # a full batch, but a commit is running
        self.clock.advance(1.0)
        self.assertEqual(len(self.pool.jobs), 1)
        self.assertEqual((writer.pending, writer.waiting), (4, 2))
        self.pool.run_next()
        self.assertEqual(fired(first), 2)
        self.assertNoResult(second)
        self.assertEqual(len(self.pool.jobs), 1)  # the backlog goes straight in
        self.pool.run_next()
        self.assertEqual(fired(second), 2)
        self.assertEqual((writer.metrics.ingest_commits, writer.pending), (2, 0))

    def test_rows_arriving_during_a_commit_wait_for_the_next(self):
        writer = self.make(batch_size=100, flush_interval=5.0)
        self.pool.hold = True
        first = writer.submit(self.rows("a", 1))
        self.clock.advance(0.005)
        self.assertEqual(len(self.pool.jobs), 1)
        second = writer.submit(self.rows("b", 1))
        self.pool.run_next()
        self.assertEqual(fired(first), 1)
        self.assertNoResult(second)
        self.assertEqual(len(self.pool.jobs), 0)
        self.clock.advance(0.005)
        self.pool.run_next()
        self.assertEqual(fired(second), 1)

    def test_a_request_is_never_split_across_commits(self):
        writer = self.make(batch_size=3)
        self.pool.hold = True
        small = writer.submit(self.rows("a", 2))
        self.clock.advance(0.005)
        big = writer.submit(self.rows("b", 5))  # waits for the running commit
        self.pool.run_next()
        self.assertEqual(fired(small), 2)
        self.pool.run_next()
        self.assertEqual(fired(big), 5)
        self.assertEqual(writer.metrics.ingest_commits, 2)

    def test_rows_reach_the_store_as_submitted(self):
        """The writer neither copies nor looks inside a request's row list."""
        batches = []

        class Store:
            def insert_batches(self, given):
                batches.extend(given)
                return [len(b) for b in given]

        writer = BatchWriter(task.Clock(), Store(), batch_size=2)
        rows = [row("a"), row("b")]
        self.assertEqual(fired(writer.submit(rows)), 2)
        self.assertIs(batches[0], rows)

    def test_empty_submit_needs_no_commit(self):
        writer = self.make()
        self.assertEqual(fired(writer.submit([])), 0)
        self.assertEqual((writer.metrics.ingest_commits, self.clock.getDelayedCalls()), (0, []))


class BackpressureTests(WriterTestCase):
    def test_queue_full_raises_at_once(self):
        writer = self.make(batch_size=100, max_queue=3)
        self.pool.hold = True
        accepted = writer.submit(self.rows("a", 2))
        with self.assertRaises(QueueFull):
            writer.submit(self.rows("b", 2))
        self.assertEqual((writer.metrics.ingest_rows_refused, writer.waiting), (2, 2))
        also = writer.submit(self.rows("c", 1))  # exactly max_queue is fine
        self.clock.advance(0.005)
        self.pool.run_next()
        self.assertEqual((fired(accepted), fired(also)), (2, 1))
        keys = self.query(
            lambda db: [r[0] for r in db.execute("SELECT key FROM messages ORDER BY key")])
        self.assertEqual(keys, ["a0", "a1", "c0"])

    def test_queue_full_by_bytes(self):
        """Few rows can still be a lot of memory: the bodies' bytes are bounded too, and
        the bytes of a commit that has started no longer count."""
        writer = self.make(batch_size=100, max_queue=1000, max_queue_bytes=1000)
        self.pool.hold = True
        first = writer.submit(self.rows("a", 1), 600)
        with self.assertRaises(QueueFull) as caught:
            writer.submit(self.rows("b", 1), 600)
        self.assertEqual(str(caught.exception),
                         "600 bytes already waiting (max_queue_bytes 1000)")
        second = writer.submit(self.rows("c", 1), 400)  # exactly max_queue_bytes is fine
        self.assertEqual((writer.metrics.ingest_rows_refused, writer.waiting), (1, 2))
        self.clock.advance(0.005)  # the commit takes both: nothing waits any more
        third = writer.submit(self.rows("d", 1), 1000)
        self.pool.run_next()
        self.assertEqual((fired(first), fired(second)), (1, 1))
        self.clock.advance(0.005)
        self.pool.run_next()
        self.assertEqual(fired(third), 1)
        self.assertEqual(self.stored(), 3)

    def test_empty_queue_admits_one_oversized_request(self):
        """Otherwise a batch bigger than max_queue would be refused forever."""
        writer = self.make(batch_size=100, max_queue=3, max_queue_bytes=10)
        d = writer.submit(self.rows("a", 5), 100)
        self.clock.advance(0.005)
        self.assertEqual(fired(d), 5)

    def test_close_commits_what_is_queued_then_refuses(self):
        writer = self.make(batch_size=100, flush_interval=1000.0)
        d = writer.submit(self.rows("a", 2))
        done = writer.close()
        self.assertEqual(fired(d), 2)
        self.assertIsNone(fired(done))
        with self.assertRaises(WriterClosed):
            writer.submit(self.rows("b", 1))
        self.assertEqual(self.stored(), 2)


class FailureTests(WriterTestCase):
    def lock_database(self):
        """Another connection holds the write lock, as a second writer process would."""
        other = sqlite3.connect(self.store.path)
        other.execute("BEGIN IMMEDIATE")
        self.addCleanup(other.close)
        return other

    def test_commit_failure_errbacks_every_waiter_and_stores_nothing(self):
        writer = self.make(batch_size=100, busy_timeout=0)
        other = self.lock_database()
        ds = [writer.submit(self.rows("a", 2)), writer.submit(self.rows("b", 1)),
              writer.submit(self.rows("c", 3))]
        self.clock.advance(0.005)
        for d in ds:
            self.failureResultOf(d, sqlite3.OperationalError)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual((writer.metrics.ingest_rows_failed, writer.metrics.ingest_commit_failures, writer.pending), (6, 1, 0))
        other.rollback()
        self.assertEqual(self.stored(), 0)
        # The writer keeps going, and a retry with the same keys stores them once.
        retry = writer.submit(self.rows("a", 2))
        self.clock.advance(0.005)
        self.assertEqual(fired(retry), 2)
        self.assertEqual(self.stored(), 2)

    def test_failed_commit_does_not_fail_the_next_one(self):
        writer = self.make(batch_size=2, busy_timeout=0)
        self.pool.hold = True
        other = self.lock_database()
        doomed = writer.submit(self.rows("a", 2))
        later = writer.submit(self.rows("b", 2))
        self.pool.run_next()
        self.failureResultOf(doomed, sqlite3.OperationalError)
        self.flushLoggedErrors(sqlite3.OperationalError)
        other.rollback()
        self.pool.run_next()
        self.assertEqual(fired(later), 2)
        self.assertEqual(self.stored(), 2)


class ValidationTests(unittest.TestCase):
    def test_nonsense_limits_refused(self):
        for kwargs in ({"batch_size": 0}, {"max_queue": 0}, {"max_queue_bytes": 0},
                       {"flush_interval": -1}):
            with self.assertRaises(ValueError):
                BatchWriter(None, None, **kwargs)


class QueueFigureTests(WriterTestCase):
    """The queue's depth (rows and bytes waiting, as max_queue counts them) and each
    commit's time, for /metrics and the alert on the queue nearing max_queue."""

    def test_the_queue_gauges_follow_what_waits_and_each_commit_is_timed(self):
        writer = self.make(batch_size=2, flush_interval=0.0)
        metrics = writer.metrics
        self.pool.hold = True
        first = writer.submit(self.rows("a", 2), size=200)  # commits at once
        self.assertEqual((metrics.ingest_queue_rows, metrics.ingest_queue_bytes), (0, 0))
        waiting = [writer.submit(self.rows(f"b{i}-", 1), size=50) for i in range(3)]
        self.assertEqual((metrics.ingest_queue_rows, metrics.ingest_queue_bytes), (3, 150))
        self.clock.advance(0.02)
        self.pool.run_next()
        self.assertEqual(fired(first), 2)
        # The next commit took two of the three (batch_size): one waits.
        self.assertEqual((metrics.ingest_queue_rows, metrics.ingest_queue_bytes), (1, 50))
        self.pool.run_next()
        self.pool.run_next()
        for d in waiting:
            self.assertEqual(fired(d), 1)
        self.assertEqual((metrics.ingest_queue_rows, metrics.ingest_queue_bytes), (0, 0))
        histogram = metrics.ingest_commit_seconds
        self.assertEqual(histogram.count, 3)
        self.assertAlmostEqual(histogram.sum, 0.02)  # the first commit ran 20 ms
        self.assertEqual(histogram.counts[histogram.bounds.index(0.025)], 1)
