"""Reading mqttd's SQLite file as any outside reader would, to see what was stored."""
import time

from tests.integration.support.common import DEFAULT_TIMEOUT


def stored_messages(db_path, timeout=DEFAULT_TIMEOUT):
    """Every row of mqttd's ``messages`` table as (client_id, payload, key, topic, qos) tuples.

    Opens the SQLite file read-only (``mode=ro``) with the interpreter's sqlite3, as any
    reader would while mqttd runs or after it was killed (WAL recovery happens on open).
    """
    import sqlite3

    uri = f"file:{db_path}?mode=ro"
    deadline = time.monotonic() + timeout
    while True:
        try:
            db = sqlite3.connect(uri, uri=True, timeout=timeout)
            try:
                return db.execute(
                    "SELECT client_id, payload, key, topic, qos FROM messages").fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError as e:  # e.g. "database is locked" during a checkpoint
            if time.monotonic() >= deadline:
                raise AssertionError(f"cannot read {db_path}: {e}") from None
            time.sleep(0.05)
