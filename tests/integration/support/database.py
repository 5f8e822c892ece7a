"""Reading mqttd's SQLite files as any outside reader would, to see what was stored:
the ``messages`` of mqttd.db, and what each broker saved of its persistent sessions in
its sessions-<slot>.db (what a crash right now would leave)."""
import glob
import os
import sqlite3
import time

from tests.integration.support.common import DEFAULT_TIMEOUT

__all__ = ["message_rowids", "saved_sessions", "stored_messages"]


def _query(path, sql, params=(), timeout=DEFAULT_TIMEOUT):
    """The rows of ``sql`` on the SQLite file at ``path``, opened read-only (``mode=ro``)
    with the interpreter's sqlite3, as any reader would while mqttd runs or after it was
    killed (WAL recovery happens on open); a busy file is read again until ``timeout``."""
    uri = f"file:{path}?mode=ro"
    deadline = time.monotonic() + timeout
    while True:
        try:
            db = sqlite3.connect(uri, uri=True, timeout=timeout)
            try:
                return db.execute(sql, params).fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError as e:  # e.g. "database is locked" during a checkpoint
            if time.monotonic() >= deadline:
                raise AssertionError(f"cannot read {path}: {e}") from None
            time.sleep(0.05)


def stored_messages(db_path, timeout=DEFAULT_TIMEOUT):
    """Every row of mqttd's ``messages`` table as (client_id, payload, key, topic, qos) tuples."""
    return _query(db_path, "SELECT client_id, payload, key, topic, qos FROM messages",
                  timeout=timeout)


def message_rowids(db_path, topic):
    """The rowids (commit order) of the rows of ``messages`` on ``topic``, oldest first."""
    return [rowid for (rowid,) in _query(
        db_path, "SELECT rowid FROM messages WHERE topic = ? ORDER BY rowid", (topic,))]


def saved_sessions(data_dir):
    """{client id: (cursor, offline_since)} of every persistent session the brokers
    have saved in DATA_DIR/sessions-*.db (offline_since None: saved while online)."""
    saved = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "sessions-*.db"))):
        for client_id, cursor, offline_since in _query(
                path, "SELECT client_id, cursor, offline_since FROM sessions"):
            saved[client_id] = (cursor, offline_since)
    return saved
