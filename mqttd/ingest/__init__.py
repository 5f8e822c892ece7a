"""The durable ingest tier: the internal webhook workers POST message batches to.

- ``wire``: the batch format (JSON, base64 payloads), shared by server and client;
- ``writer``: group commit, answering each batch only after its COMMIT;
- ``resource``: the twisted.web resource and Site (``build_ingest_site``).

Rows land in ``mqttd.store.sqlite.SqliteStore`` (DATA_DIR/mqttd.db).
"""
