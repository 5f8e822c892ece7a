"""A key already stored with other contents is an error, never "already stored".

The attack of issue 11 (point 1): rows forged under the next message keys made the
webhook count the real messages that got those keys as duplicates, so the broker
acknowledged them and stored nothing. Here the store refuses such a key
(``KeyConflict``), the webhook answers 409 for that request alone, and the broker's
client does not acknowledge its messages. An identical retry stays a duplicate.
"""
import attrs
from twisted.internet import defer, reactor
from twisted.trial import unittest

from mqttd.config import WebhookConfig
from mqttd.ingest.client import StoreRejected, WebhookSink
from mqttd.ingest.http_client import build_http_client
from mqttd.ingest.resource import build_ingest_site
from mqttd.ingest.wire import encode_batch
from mqttd.ingest.writer import BatchWriter
from mqttd.store.sqlite import KeyConflict, SqliteStore, message_row
from tests.support.ingest import SECRET, ResourceTestCase
from tests.support.store import StoreTestCase, make_dir, message, row


class StoreConflictTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_any_differing_field_is_a_conflict_and_the_stored_row_stays(self):
        store = self.open_store()
        yield store.start()
        stored = message("k", username=None)
        yield store.insert_batch([message_row(stored)])
        changes = {"client_id": "dev-2", "username": "acme", "topic": "t/2",
                   "payload": b"forged", "qos": 2, "retain": True, "received_at": 1.5}
        for field, value in changes.items():
            other = stored._replace(**{field: value})
            failure = yield self.assertFailure(store.insert_batch([message_row(other)]),
                                               KeyConflict)
            self.assertEqual(failure.key, "k")
        self.assertEqual((yield store.recent("dev-1")), [stored])
        # The identical retry is what "already stored" means: 0 new, no error.
        self.assertEqual((yield store.insert_batch([message_row(stored)])), 0)

    @defer.inlineCallbacks
    def test_a_conflict_fails_its_own_batch_only(self):
        """Three requests in one group commit: the one holding a conflicting key is not
        stored at all (not even its other rows, here over several statements), the
        others are committed."""
        store = self.open_store()
        yield store.start()
        yield store.insert_batch([row("forged", payload=b"FORGED")])
        clean1 = [row(f"a{i}") for i in range(3)]
        conflicting = [row(f"b{i}") for i in range(300)] + [row("forged", payload=b"REAL")]
        clean2 = [row("c0"), row("forged", payload=b"FORGED")]  # an honest duplicate
        outcomes = yield store.insert_batches([clean1, conflicting, [], clean2])
        self.assertEqual(outcomes[0::2], [3, 0])
        self.assertEqual(outcomes[3], 1)
        self.assertIsInstance(outcomes[1], KeyConflict)
        self.assertEqual(outcomes[1].key, "forged")
        keys = {k for (k,) in self.raw(store).execute("SELECT key FROM messages")}
        self.assertEqual(keys, {"forged", "a0", "a1", "a2", "c0"})
        # ... and a lone batch that fits one statement (its own transaction) as well.
        yield self.assertFailure(store.insert_batch([row("d0"), row("forged")]), KeyConflict)
        self.assertEqual((yield store.count()), 5)


class ResourceConflictTests(ResourceTestCase):
    def test_409_for_the_conflicting_request_200_for_the_other(self):
        first = self.post(encode_batch([message("k1", payload=b"FORGED")]))
        self.clock.advance(0.005)
        self.assertEqual(first.responseCode, 200)
        real = self.post(encode_batch([message("k1", payload=b"REAL"), message("k2")]))
        other = self.post(encode_batch([message("k3")]))
        self.clock.advance(0.005)  # one commit for both
        self.assertEqual(real.responseCode, 409)
        self.assertIn("'k1' is already stored with other contents", self.answer(real)["error"])
        self.assertEqual(other.responseCode, 200)
        self.assertEqual(self.answer(other), {"received": 1, "inserted": 1, "duplicates": 0})
        self.assertEqual(self.stored(), 2)  # k1 (forged) and k3; not k2
        self.assertEqual((self.writer.metrics.ingest_rows_conflicting, self.resource.metrics.ingest_requests["conflict"]), (2, 1))
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class ClientConflictTests(unittest.TestCase):
    """The broker's own client against the real tier on 127.0.0.1."""

    @defer.inlineCallbacks
    def test_a_forged_row_under_the_key_is_not_acknowledged(self):
        store = SqliteStore.in_data_dir(reactor, make_dir(self))
        yield store.start()
        self.addCleanup(store.close)
        writer = BatchWriter(reactor, store, flush_interval=0.0)
        self.addCleanup(writer.close)
        port = reactor.listenTCP(0, build_ingest_site(reactor, writer, SECRET), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        config = attrs.evolve(WebhookConfig(), ack_timeout=5.0)
        http, pool = build_http_client(reactor, config)
        self.addCleanup(pool.closeCachedConnections)
        webhook = WebhookSink(reactor, config, http,
                               f"http://127.0.0.1:{port.getHost().port}/v1/messages", secret=SECRET)
        real = message("next-key", payload=b"REAL-21.5")
        yield store.insert_batch([message_row(real._replace(payload=b"FORGED"))])
        failure = yield self.assertFailure(webhook.store(real), StoreRejected)
        self.assertEqual(failure.reason, "key conflict")
        self.assertEqual((webhook.metrics.webhook_committed, dict(webhook.metrics.webhook_rejected)), (0, {"key conflict": 1}))
        # The honest retry of a stored message is still acknowledged.
        other = message("other-key", payload=b"21.6")
        yield webhook.store(other)
        yield webhook.store(other)
        self.assertEqual(webhook.metrics.webhook_committed, 2)
        self.assertEqual(webhook.metrics.webhook_already_stored, 1)
