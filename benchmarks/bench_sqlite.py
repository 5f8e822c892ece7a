#!/usr/bin/env python3
"""The SQLite write alone: CPU per row of the store's own insert, in this thread.

Runs ``SqliteStore._insert`` (the statements the group-commit writer runs, one commit
per call) on a fresh database in a temp dir, 100-row commits of 64-byte payloads after
20,000 rows of warm-up, with the keys the broker makes (in arrival order) and rows
spread over N client ids as N connections would. Prints the process CPU per row
(user + sys: SQLite's work, and the kernel's for the WAL writes and fsyncs), for
``synchronous`` FULL (the default) and OFF, and once more without the
``(client_id, received_at)`` index, to show what that index costs.

    .venv/bin/python benchmarks/bench_sqlite.py
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mqttd.store.sqlite import SqliteStore  # noqa: E402

ROWS = 100
WARMUP = 200
COMMITS = 300


class _Clock:
    def seconds(self):
        return time.time()


def _batches(clients, count, first=0):
    out = []
    for b in range(first, first + count):
        base = b * ROWS
        out.append([(f"{'0' * 16}-{base + i:012x}-{'a' * 16}", f"bench-{(base + i) % clients}",
                     None, "bench/sqlite", b"x" * 64, 1, False, 1767225600.0 + (base + i) * 1e-5)
                    for i in range(ROWS)])
    return out


def cpu_per_row(clients, synchronous, index=True):
    folder = tempfile.mkdtemp(prefix="bench-sqlite-")
    store = SqliteStore(_Clock(), os.path.join(folder, "mqttd.db"), synchronous=synchronous)
    store._open(None)  # on this thread: no pool, no reactor
    db = store._db
    if not index:
        db.execute("DROP INDEX messages_client_received")
    for batch in _batches(clients, WARMUP):
        store._insert(db, [batch], time.time)
    batches = _batches(clients, COMMITS, WARMUP)
    start = time.process_time()
    for batch in batches:
        store._insert(db, [batch], time.time)
    spent = time.process_time() - start
    db.close()
    return 1e6 * spent / (COMMITS * ROWS)


def main():
    for synchronous in ("FULL", "OFF"):
        for clients in (10, 1000):
            runs = [cpu_per_row(clients, synchronous) for _ in range(3)]
            bare = [cpu_per_row(clients, synchronous, index=False) for _ in range(3)]
            print(f"synchronous={synchronous:4s} {clients:5d} clients: {min(runs):.2f} us/row "
                  f"(best of 3), without the client index {min(bare):.2f} us/row")


if __name__ == "__main__":
    main()
