"""SqliteStore test doubles and builders, shared by the store, writer, resource and
service tests.

``InlineReactor`` / ``InlinePool`` are synchronous stand-ins for the reactor's thread
hand-off and the pool only, for deterministic tests with ``task.Clock``; the SQLite
underneath is always real. The store writes ROWS (tuples in ``ROW`` order, what the
webhook's ``decode_batch`` returns); ``row()`` builds one, ``message()`` the Message
value ``recent()`` reads back. ``StoreTestCase`` opens a store on the real reactor and
its real one-thread pool in a fresh data dir, and a second plain connection to read it.
"""
import os
import sqlite3
from collections import deque

from twisted.internet import reactor, task
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.store.sink import Message
from mqttd.store.sqlite import SqliteStore, message_row


class InlineReactor(task.Clock):
    """task.Clock whose callFromThread runs at once (the 'thread' is the caller)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class InlinePool:
    """Stand-in for ThreadPool(1, 1): runs each job on the calling thread.

    At once by default; with ``hold = True`` jobs queue until ``run_next()``, so a test
    decides exactly when a commit completes.
    """

    def __init__(self):
        self.hold = False
        self.jobs = deque()
        self.started = False

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.jobs.append((on_result, f, args, kwargs))
        if not self.hold:
            while self.jobs:
                self.run_next()

    def run_next(self):
        on_result, f, args, kwargs = self.jobs.popleft()
        try:
            result = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


def message(key, client_id="dev-1", payload=b"p", received_at=1.0, **kw):
    fields = dict(username="acme", topic="t/1", qos=1, retain=False)
    fields.update(kw)
    return Message(key, client_id, fields["username"], fields["topic"], payload,
                   fields["qos"], fields["retain"], received_at)


def row(key, client_id="dev-1", payload=b"p", received_at=1.0, **kw):
    """One row tuple (``ROW`` order), as the webhook hands it to the store."""
    return message_row(message(key, client_id, payload, received_at, **kw))


def inline_store(testcase, **kwargs):
    """A started SqliteStore on a real file with the inline doubles; (store, clock, pool)."""
    clock, pool = InlineReactor(), InlinePool()
    store = SqliteStore.in_data_dir(clock, make_dir(testcase), threadpool=pool, **kwargs)
    fired(store.start())

    def close():
        pool.hold = False  # let held jobs (and the close itself) run
        while pool.jobs:
            pool.run_next()
        return store.close()

    testcase.addCleanup(close)
    return store, clock, pool


def make_dir(testcase):
    path = testcase.mktemp()
    os.makedirs(path)
    return path


def fired(d):
    """The result of an already-fired Deferred (a failure is raised)."""
    results = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class HeldPoolQueries:
    """For tests holding commits in an InlinePool (``self.pool``) of ``self.store``."""

    def query(self, fn):
        """Run ``fn(db)`` now, even while commits are held (none may be waiting)."""
        self.assertEqual(len(self.pool.jobs), 0)
        hold, self.pool.hold = self.pool.hold, False
        try:
            return fired(self.store.run(fn))
        finally:
            self.pool.hold = hold

    def stored(self):
        return self.query(lambda db: db.execute("SELECT count(*) FROM messages").fetchone()[0])


class StoreTestCase(unittest.TestCase):
    def open_store(self, **kwargs):
        self.data_dir = make_dir(self)
        store = SqliteStore.in_data_dir(reactor, self.data_dir, **kwargs)
        self.addCleanup(store.close)
        return store

    def raw(self, store):
        """A second, plain connection to the same file (what a user's query tool sees)."""
        conn = sqlite3.connect(store.path)
        self.addCleanup(conn.close)
        return conn
