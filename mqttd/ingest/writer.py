"""Group commit: many HTTP requests' rows share one SQLite COMMIT (one fsync).

A commit with synchronous=FULL costs one fsync whether it holds 1 row or 500, so rows
from concurrent requests wait a few milliseconds to share it. ``submit`` answers only
after the COMMIT holding its rows; that is the whole promise of mqttd (DESIGN.md: "An
acknowledgement means the data is in the database"): the worker PUBACKs on that answer.

Rules:

- a commit starts when ``batch_size`` rows wait, or ``flush_interval`` ms after the
  first waiting row, whichever is first; ``flush_interval`` 0 starts it at once (in
  ``submit``), without a reactor turn in between: the commit is the longest step
  between a PUBLISH and its PUBACK, and a closed loop of clients waits for it;
- one commit at a time; rows arriving meanwhile wait for the next one. If the queue
  still holds rows after a commit took its share, they are backlog and go in the very
  next commit without waiting for the timer;
- a request's rows are never split across commits (a commit takes whole requests until
  it holds at least ``batch_size`` rows), so one COMMIT decides one request;
- a failed commit fails every request in it: none of their rows count as stored (the
  transaction rolled back) and each client retries with the same keys;
- a request holding a key already stored with other contents fails alone with the
  store's KeyConflict (nothing of it is stored; the webhook answers 409), and the other
  requests of its commit are committed;
- more than ``max_queue`` rows, or more than ``max_queue_bytes`` of request bodies,
  waiting: ``submit`` raises QueueFull at once, so the webhook answers 503 and memory
  stays bounded. Rows alone were not a bound worth the name: 50,000 rows of 1 MiB
  payloads are 50 GiB, and a client that gives up on its request leaves its rows
  queued (they still commit). An empty queue always admits one request, however big,
  so an oversized batch cannot be refused forever.
"""
from collections import deque

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from mqttd.metrics import Metrics

log = Logger()


class Unavailable(Exception):
    """The writer cannot take rows now; the client should retry later (HTTP 503)."""


class QueueFull(Unavailable):
    """Too much (``max_queue`` rows or ``max_queue_bytes``) is already waiting for a commit."""


class WriterClosed(Unavailable):
    """The writer is shutting down and takes no more rows."""


class _Waiter:
    """One ``submit`` call: its rows and the Deferred answered after their COMMIT."""

    __slots__ = ("rows", "size", "deferred")

    def __init__(self, rows, size):
        self.rows = rows
        self.size = size
        self.deferred = Deferred()


class BatchWriter:
    """Queues rows from many requests and commits them together through ``store``.

    ``store`` needs ``insert_batches(list of row lists) -> Deferred[list of new-row
    counts, or exceptions for lists left out]`` in one transaction (SqliteStore); a row
    is a tuple in ``mqttd.store.sink.ROW`` order, as ``mqttd.ingest.wire.decode_batch``
    returns them.
    The writer only counts and groups rows, it never looks inside one. ``flush_interval``
    is in milliseconds.
    """

    def __init__(self, clock, store, batch_size=500, flush_interval=5.0, max_queue=50_000,
                 max_queue_bytes=256 * 1024 * 1024, metrics=None):
        if batch_size < 1 or max_queue < 1 or max_queue_bytes < 1 or flush_interval < 0:
            raise ValueError("batch_size, max_queue and max_queue_bytes must be >= 1, "
                             "flush_interval >= 0")
        self._clock = clock
        self._store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self._queue = deque()
        self._waiting = 0  # rows in _queue
        self._waiting_bytes = 0  # their requests' sizes
        self._in_flight = 0  # rows in the commit running now
        self._committing = False
        self._due = False  # the timer fired (or a drain asked): flush at the next chance
        self._timer = None
        self._closed = False
        self._drains = []
        # Counters: the process's one registry (``ingest_*`` fields).
        self.metrics = Metrics() if metrics is None else metrics

    @property
    def pending(self):
        """Rows accepted and not yet answered: waiting plus in the running commit."""
        return self._waiting + self._in_flight

    @property
    def waiting(self):
        """Rows queued for a commit that has not started."""
        return self._waiting

    def submit(self, rows, size=0):
        """Queue ``rows`` (a list of row tuples, kept as is); Deferred of how many were
        new, fired after their COMMIT. ``size``: the bytes they stand for (the request
        body's length), counted against ``max_queue_bytes``.

        Raises QueueFull (or WriterClosed) synchronously instead of queueing. The
        Deferred fails if the commit failed; then none of ``rows`` were stored.
        """
        if type(rows) is not list:
            rows = list(rows)
        if self._closed:
            self.metrics.ingest_rows_refused += len(rows)
            raise WriterClosed("ingest writer is shutting down")
        if not rows:
            return succeed(0)
        if self._waiting and self._waiting + len(rows) > self.max_queue:
            self.metrics.ingest_rows_refused += len(rows)
            raise QueueFull(f"{self._waiting} rows already waiting (max_queue {self.max_queue})")
        if self._waiting and self._waiting_bytes + size > self.max_queue_bytes:
            self.metrics.ingest_rows_refused += len(rows)
            raise QueueFull(f"{self._waiting_bytes} bytes already waiting "
                            f"(max_queue_bytes {self.max_queue_bytes})")
        waiter = _Waiter(rows, size)
        was_empty = not self._queue
        self._queue.append(waiter)
        self._waiting += len(rows)
        self._waiting_bytes += size
        self._gauge_queue()
        if was_empty and not self._due:
            self._start_timer()
        self._maybe_flush()
        return waiter.deferred

    def drain(self):
        """Commit everything queued now; Deferred fired once nothing is pending."""
        if not self._queue and not self._committing:
            return succeed(None)
        d = Deferred()
        self._drains.append(d)
        if self._queue:
            self._due = True
            self._maybe_flush()
        return d

    def close(self):
        """Refuse new rows (503), commit what is queued; Deferred fired when done."""
        self._closed = True
        return self.drain()

    # -- scheduling ------------------------------------------------------------------

    def _start_timer(self):
        if self.flush_interval == 0:
            self._due = True  # no timer: commit now, or right after the running commit
            return
        if self._timer is None:
            self._timer = self._clock.callLater(self.flush_interval / 1000.0, self._on_timer)

    def _cancel_timer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _on_timer(self):
        self._timer = None
        self._due = True
        try:
            self._maybe_flush()
        except Exception:
            # A reactor timer has no caller to report to; never let the writer wedge.
            log.failure("ingest writer: flush on timer failed")

    def _maybe_flush(self):
        if self._committing or not self._queue:
            return
        if self._due or self._waiting >= self.batch_size:
            self._flush()

    def _flush(self):
        taken = []
        rows = 0
        while self._queue and rows < self.batch_size:
            waiter = self._queue.popleft()
            taken.append(waiter)
            rows += len(waiter.rows)
            self._waiting_bytes -= waiter.size
        self._waiting -= rows
        self._gauge_queue()
        self._in_flight = rows
        self._committing = True
        if self._queue:
            self._due = True  # backlog: straight into the next commit
        else:
            self._due = False
            self._cancel_timer()
        started = self._clock.seconds()
        d = maybeDeferred(self._store.insert_batches, [w.rows for w in taken])
        d.addCallbacks(self._committed, self._failed, callbackArgs=(taken, rows, started),
                       errbackArgs=(taken, rows, started))
        d.addErrback(lambda f: log.failure("ingest writer: answering a commit failed", f))

    def _committed(self, outcomes, taken, rows, started):
        """``outcomes``: per request, its new-row count, or the exception that kept it
        out of the commit (a KeyConflict)."""
        self._finish(started)
        metrics = self.metrics
        metrics.ingest_commits += 1
        for waiter, outcome in zip(taken, outcomes):
            if isinstance(outcome, Exception):
                rows -= len(waiter.rows)
                metrics.ingest_rows_conflicting += len(waiter.rows)
                waiter.deferred.errback(outcome)
            else:
                metrics.ingest_rows_inserted += outcome
                waiter.deferred.callback(outcome)
        metrics.ingest_rows_committed += rows
        self._after_commit()

    def _failed(self, failure, taken, rows, started):
        self._finish(started)
        self.metrics.ingest_commit_failures += 1
        self.metrics.ingest_rows_failed += rows
        log.failure("ingest writer: commit of {rows} rows from {requests} requests failed; "
                    "none of them are stored", failure, rows=rows, requests=len(taken))
        for waiter in taken:
            waiter.deferred.errback(failure)
        self._after_commit()

    def _finish(self, started):
        self._committing = False
        self._in_flight = 0
        self.metrics.ingest_commit_seconds.observe(self._clock.seconds() - started)

    def _gauge_queue(self):
        """What waits for a commit, against max_queue and max_queue_bytes (the alert on
        the queue nearing them reads these, ``mqttd.manage.guardrails``)."""
        metrics = self.metrics
        metrics.ingest_queue_rows = self._waiting
        metrics.ingest_queue_bytes = self._waiting_bytes

    def _after_commit(self):
        self._maybe_flush()
        if not self._queue and not self._committing and self._drains:
            drains, self._drains = self._drains, []
            for d in drains:
                d.callback(None)
