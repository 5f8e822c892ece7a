"""The durable ingest path: the internal webhook workers POST message batches to.

Server side (the ingest tier):

- ``wire``: the batch format (JSON, base64 payloads), shared by server and client;
- ``writer``: group commit, answering each batch only after its COMMIT;
- ``credentials``: the bearer secret every request carries, checked in constant time;
- ``request``: what of a request body is buffered (size, secret, deadline, budget);
- ``resource``: the twisted.web resource and Site (``build_ingest_site``);
- ``service``: the tier as a Twisted service (store, writer, site, listener).

Client side (in the broker):

- ``client``: ``WebhookSink``, the broker's message store: batching, retries, deadlines;
- ``http_client``: treq over its own pool, the URL and endpoint made once;
- ``url``: the webhook URL as the URI the client sends (config checks it the same way).

Rows land in ``mqttd.store.sqlite.SqliteStore`` (DATA_DIR/mqttd.db).
"""
