"""Run `twistd mqttd` with the webhook's HTTP taken out: what the HTTP hop costs.

For benchmarking only (compare.py --nohttp). Everything of the durable appliance runs
but treq and twisted.web: the broker, the webhook client's batching (``linger``,
deadlines, wire encoding), the built-in tier's wire decoding, its group-commit writer
and the real SQLite commit with its fsync. Only the request itself is replaced: the
encoded body is decoded (``decode_batch``) and handed to the built-in tier's writer in
the same process, and the "answer" is the writer's result, encoded as the webhook would
send it. Rows really are committed before the PUBACK, so compare.py's durability check
applies. The figure it gives, beside the real appliance's in the same rounds, is the
cost of the HTTP hop (treq, Agent, the pool, loopback TCP, twisted.web) on the path of
every PUBACK. The issue and DESIGN.md require that hop (broker workers and ingest
processes are separate processes later), so this is deliberately not reachable from
the mqttd command line.

    python benchmarks/nohttp_mqttd.py -n --pidfile P mqttd --config C --listen tcp:... --data-dir D
"""
import sys


class _Answer:
    """What WebhookSink reads of a treq response: the code, and the body delivered to
    the protocol it gives (as twisted.web's Response does)."""

    code = 200

    def __init__(self, body):
        self._body = body

    def deliverBody(self, protocol):
        from twisted.internet.testing import StringTransport
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        protocol.makeConnection(StringTransport())
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class _DirectWebhook:
    """``post()`` as treq's, into the built-in tier's writer of this process."""

    writer = None  # set when the ingest tier is built

    def post(self, url, data, headers=None, allow_redirects=False, unbuffered=False):
        from mqttd.ingest.wire import BatchResult, decode_batch, encode_result

        rows = decode_batch(data)
        d = self.writer.submit(rows, len(data))
        return d.addCallback(lambda inserted: _Answer(encode_result(BatchResult(len(rows), inserted))))


def main():
    from twisted.web.client import HTTPConnectionPool

    from mqttd import service
    from mqttd.ingest import service as ingest_service

    webhook = _DirectWebhook()

    def build_http_client(reactor, config, tls_policy=None):
        return webhook, HTTPConnectionPool(reactor, persistent=True)

    class IngestService(ingest_service.IngestService):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            webhook.writer = self.writer

    service.build_http_client = build_http_client
    service.IngestService = IngestService
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
