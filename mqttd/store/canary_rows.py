"""The canary's question to SQLite: is the row of the message it published there?

A read-only connection to mqttd.db (``mode=ro``: the canary never writes; the ingest
child is the one writer) on its own one-thread pool, so the reactor never waits on
SQLite. The lookup uses the ``messages (client_id, received_at)`` index: it reads the
canary's own rows since the publish, not the table.
"""
import os
import sqlite3
from functools import partial
from urllib.parse import quote

from mqttd.store.pool import OnOwnConnection

__all__ = ["CanaryRows"]

_FIND = ("SELECT 1 FROM messages WHERE client_id = ? AND received_at >= ? AND payload = ? "
         "LIMIT 1")


def _connect_ro(path, busy_timeout):
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)


def _find(conn, client_id, payload, since):
    return conn.execute(_FIND, (client_id, since, payload)).fetchone() is not None


class CanaryRows(OnOwnConnection):
    """``found(client_id, payload, since)``: Deferred of whether a row of ``client_id``
    with exactly ``payload`` was received at ``since`` or later."""

    def __init__(self, reactor, path, busy_timeout=5.0, threadpool=None):
        super().__init__(reactor, path, threadpool, "mqttd-canary",
                         partial(_connect_ro, busy_timeout=busy_timeout))

    def found(self, client_id, payload, since):
        return self._on_conn(_find, client_id, payload, since)
