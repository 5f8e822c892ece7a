"""Life cycle of a SQLite connection that lives on its own one-thread pool.

A sqlite3 connection belongs to the thread that opened it, so mqttd.db's store and each
broker's sessions file open, use and close their connection on a ``ThreadPool(1, 1)``;
these two helpers keep the pool's start and stop around that in one place,
``OnOwnPool`` is the life cycle (start, close, run a call) of an object built so, and
``OnOwnConnection`` that of one whose pool holds a single connection (mqttd.db's gate,
trace rules and canary stores).
"""
from twisted.internet.defer import fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["OnOwnConnection", "OnOwnPool", "StoreClosed", "opened_on", "closed_on"]


class StoreClosed(Exception):
    """The store is not running (not started yet, or closed)."""


def opened_on(pool, opening, failed):
    """Start ``pool``, then ``opening()`` (a Deferred of the open, run on the pool). If
    the open fails, ``failed()`` is called and the pool stopped; the failure passes on."""
    pool.start()
    d = opening()

    def stop(failure):
        failed()
        pool.stop()
        return failure

    d.addErrback(stop)
    return d


def closed_on(pool, closing):
    """``closing`` (a Deferred of the close, run on the pool), then the pool stopped."""

    def stop(result):
        pool.stop()
        return result

    closing.addBoth(stop)
    return closing


class OnOwnPool:
    """``start()``, ``close()`` and ``_run(fn, *args)`` (a Deferred of ``fn(*args)`` on
    the pool's thread) for an object whose connections live on a ``ThreadPool(1, 1)``
    of its own (``threadpool`` given: tests' synchronous double). Subclasses define
    ``_open()`` and ``_close()``, run on that thread."""

    def __init__(self, reactor, path, threadpool, name):
        self._reactor = reactor
        self.path = str(path)
        self._pool = threadpool if threadpool is not None else ThreadPool(1, 1, name=name)
        self._running = False

    def start(self):
        """Start the pool, then ``_open()`` on it; Deferred of None (idempotent)."""
        if self._running:
            return succeed(None)
        self._running = True
        return opened_on(self._pool, lambda: self._run(self._open), self._stopped)

    def _stopped(self):
        self._running = False

    def close(self):
        """``_close()`` on the pool's thread, then the pool stopped (idempotent)."""
        if not self._running:
            return succeed(None)
        d = self._run(self._close)
        self._running = False
        return closed_on(self._pool, d)

    def _run(self, fn, *args):
        if not self._running:
            return fail(StoreClosed(f"{self.path}: not running"))
        return deferToThreadPool(self._reactor, self._pool, fn, *args)


class OnOwnConnection(OnOwnPool):
    """An ``OnOwnPool`` with one connection, ``connect(path)`` run on the pool's thread
    at ``start()`` and closed at ``close()``; ``_on_conn(fn, *args)`` is a Deferred of
    ``fn(connection, *args)`` run on that thread."""

    def __init__(self, reactor, path, threadpool, name, connect):
        super().__init__(reactor, path, threadpool, name)
        self._connect = connect
        self._conn = None  # touched only on the pool's thread

    def _open(self):
        self._conn = self._connect(self.path)

    def _close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _on_conn(self, fn, *args):
        return self._run(lambda: fn(self._conn, *args))
