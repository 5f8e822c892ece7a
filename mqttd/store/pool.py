"""Life cycle of a SQLite connection that lives on its own one-thread pool.

A sqlite3 connection belongs to the thread that opened it, so mqttd.db's store and each
broker's sessions file open, use and close their connection on a ``ThreadPool(1, 1)``;
these two helpers keep the pool's start and stop around that in one place.
"""

__all__ = ["opened_on", "closed_on"]


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
