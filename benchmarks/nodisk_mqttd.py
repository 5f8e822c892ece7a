"""Run `twistd mqttd` with the SQLite write taken out: the ceiling of the durable path.

For benchmarking only (compare.py --nodisk). Everything of the real appliance runs: the
broker, the webhook client (treq over its pool, batching), the built-in ingest tier
(twisted.web resource, wire decoding, the group-commit writer and its thread pool).
Only ``SqliteStore._insert`` is replaced by one that writes nothing and reports every
row as new. The figure it gives is what the durable path could reach if the COMMIT
(and its fsync) cost nothing: a ceiling, which shows how much of the gap to mosquitto
the database explains and how much the HTTP hop and the batching do. It acknowledges
WITHOUT storing, so it is deliberately not reachable from the mqttd command line.

    python benchmarks/nodisk_mqttd.py -n --pidfile P mqttd --config C --listen tcp:... --data-dir D
"""
import sys


def _insert_nothing(db, batches, now):
    return [len(batch) for batch in batches]


def main():
    from mqttd.store import sqlite

    sqlite.SqliteStore._insert = staticmethod(_insert_nothing)
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
