"""The ``retained`` table of mqttd.db: kept in the commit of the messages, read at start.

Why in the ingest writer's transaction and not written by the broker: a retained
PUBLISH is acknowledged once its row is committed, so the retained state it leaves must
be durable by the same COMMIT; a write of its own afterwards would leave a window where
a crash loses a retained message that was PUBACKed. Nothing new crosses the webhook: the
rows already carry topic, payload, qos, retain and key.

Rules, per message with retain=1, in commit order (the order of the rows in the
batches): a non-empty payload upserts its topic, an empty one leaves a tombstone (an
empty payload: readers skip it) [MQTT-3.3.1-10/11]. A message whose key was already
stored (a retried batch) changes nothing: its effect was applied when it was first
committed, and applied again it could overwrite a newer value. And a row of the same
broker run (the first 17 characters of a key, its boot id) with a NEWER key is kept:
keys of one run count up in receive order, and across a drop and a reconnect a
client's older message can commit after its newer one (a batch retried after a 503).
The broker's in-memory store applies the same key rule (``mqttd.broker.retained``), and
routes a client's messages in receive order, so memory and disk agree on the value.
"""
from operator import itemgetter

from mqttd.namespace import mounted

__all__ = ["BOOT_PREFIX", "already_stored", "newer_of_run", "apply_retained", "has_retained",
           "has_retained_table", "load_retained",
           "retained_rows"]

#: A key is BOOTID-COUNTER-RANDOM (``mqttd.broker.broker``): the boot id and its dash.
BOOT_PREFIX = 17


def newer_of_run(kept, key):
    """Is the key ``kept`` a newer one of the same broker run than ``key``? The rule
    ``_UPSERT`` applies, for those that order retained values outside SQLite (the
    tree's master, ``mqttd.tree.relay``)."""
    return kept[:BOOT_PREFIX] == key[:BOOT_PREFIX] and kept > key

_KEY = 0
_TOPIC = 3
_PAYLOAD = 4
_QOS = 5
_RETAIN = itemgetter(6)
_ACCOUNT = 8
_STORED = "SELECT key FROM messages WHERE key IN ({})"
_UPSERT = (
    "INSERT INTO retained (topic, payload, qos, key, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, "
    "key = excluded.key, updated_at = excluded.updated_at "
    f"WHERE NOT (substr(retained.key, 1, {BOOT_PREFIX}) = substr(excluded.key, 1, {BOOT_PREFIX}) "
    "AND retained.key > excluded.key)"
)
_CHUNK = 500  # keys per IN (...): far below SQLite's parameter limit
_LOAD = ("SELECT topic, payload, qos, key, updated_at FROM retained "
         "WHERE length(payload) > 0")


def has_retained(batches):
    """Does any row of ``batches`` have retain=1? One C-level scan per batch: the
    common commit (no retained rows) pays this and nothing else."""
    for batch in batches:
        if True in map(_RETAIN, batch):
            return True
    return False


def retained_rows(batches):
    """The rows with retain=1, in commit order."""
    return [row for batch in batches for row in batch if row[6]]


def already_stored(conn, rows):
    """Keys of ``rows`` already in ``messages`` (call BEFORE inserting them)."""
    keys = [row[_KEY] for row in rows]
    found = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        found.update(key for (key,) in conn.execute(
            _STORED.format(", ".join("?" * len(chunk))), chunk))
    return found


def apply_retained(conn, rows, skip, now):
    """Apply ``rows`` (retain=1, commit order) to ``retained``, but not those whose key
    is in ``skip`` (stored before this transaction). Runs inside the writer's
    transaction. Keyed by the broker's topic, mounted in the row's account (what the
    broker's retained set holds: two accounts' topics are two)."""
    for row in rows:
        if row[_KEY] in skip:
            continue
        conn.execute(_UPSERT, (mounted(row[_ACCOUNT], row[_TOPIC]), row[_PAYLOAD], row[_QOS],
                               row[_KEY], now))


def has_retained_table(conn):
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'retained'"
    ).fetchone() is not None


def load_retained(conn):
    """(topic, payload, qos, key, updated_at) of every retained message (tombstones
    skipped); an empty list if the table does not exist (an older database)."""
    if not has_retained_table(conn):
        return []
    return [(topic, bytes(payload), qos, key, updated_at)
            for topic, payload, qos, key, updated_at in conn.execute(_LOAD)]
