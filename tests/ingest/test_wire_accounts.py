"""Rows carry the account: a message of an account's client (its topic mounted in the
broker, ``$a/ACCOUNT/`` + topic) crosses the webhook as (account, its own topic) and is
stored so, NULL without one; the retained table keeps the broker's mounted topic. An
older body (nine keys, no account column) still stores, with NULL."""
import base64
import json

from twisted.trial import unittest

from mqttd.ingest.wire import (BODY_FRAME, WireError, batch_size_bound, decode_batch,
                               encode_batch, size_bound)
from tests.support.ingest import ResourceTestCase
from tests.support.store import message



class WireTests(ResourceTestCase):
    def test_an_accounts_message_crosses_as_its_account_and_own_topic(self):
        messages = [message("a", topic="$a/acme//v1.6/devices/x"), message("b", topic="t/1")]
        data = encode_batch(messages)
        document = json.loads(data)
        self.assertEqual(document["account"], ["acme", None])
        self.assertEqual(document["topic"], ["/v1.6/devices/x", "t/1"])
        rows = decode_batch(data)
        self.assertEqual([(r[3], r[8]) for r in rows],
                         [("/v1.6/devices/x", "acme"), ("t/1", None)])
        # The webhook client cuts batches by these bounds: they hold with the column.
        for messages in ([message("a", topic="$a/acme/t")],
                         [message("a", topic="$a/a/t"), message("b", topic="t")],
                         [message("b", topic="t"), message(f"c{'x' * 50}", topic="$a/a.b/")]):
            actual = len(encode_batch(messages))
            self.assertIn("account", json.loads(encode_batch(messages)))
            self.assertLessEqual(actual, BODY_FRAME + sum(map(size_bound, messages)))
            self.assertLessEqual(actual, batch_size_bound(messages))

    def test_a_batch_without_accounts_is_the_body_it_was(self):
        document = json.loads(encode_batch([message("a"), message("b")]))
        self.assertNotIn("account", document)
        self.assertEqual(len(document), 9)
        (row,) = decode_batch(encode_batch([message("a")]))
        self.assertIsNone(row[8])

    def test_a_bad_account_column_is_refused(self):
        good = json.loads(encode_batch([message("a", topic="$a/acme/t")]))
        for column, reason in ((["bad name"], "account[0]: must be an account name"),
                               ([7], "account[0]: must be an account name"),
                               (["a", "b"], "account: must be an array of 1"),
                               ("acme", "account: must be an array of 1")):
            data = json.dumps(dict(good, account=column)).encode()
            with self.assertRaises(WireError) as e:
                decode_batch(data)
            self.assertIn(reason, str(e.exception))


class StoredRowTests(ResourceTestCase):
    def rows(self, sql):
        return self.store.run(lambda db: db.execute(sql).fetchall())

    def test_rows_hold_the_account_and_the_devices_own_topic(self):
        data = encode_batch([
            message("a", topic="$a/acme//v1.6/devices/x", retain=True),
            message("b", topic="$a/globex//v1.6/devices/x", retain=True),
            message("c", topic="/v1.6/devices/x", retain=True)])
        request = self.post(data)
        self.clock.advance(0.005)
        self.assertEqual(request.responseCode, 200)
        stored = self.successResultOf(self.rows(
            "SELECT key, account, topic FROM messages ORDER BY key"))
        self.assertEqual(stored, [("a", "acme", "/v1.6/devices/x"),
                                  ("b", "globex", "/v1.6/devices/x"),
                                  ("c", None, "/v1.6/devices/x")])
        retained = self.successResultOf(self.rows("SELECT topic, key FROM retained ORDER BY key"))
        self.assertEqual(retained, [("$a/acme//v1.6/devices/x", "a"),
                                    ("$a/globex//v1.6/devices/x", "b"),
                                    ("/v1.6/devices/x", "c")])
        # Read back (a persistent session's replay, recent()): the broker's topic again.
        recent = self.successResultOf(self.store.recent("dev-1"))
        self.assertEqual(sorted(m.topic for m in recent),
                         ["$a/acme//v1.6/devices/x", "$a/globex//v1.6/devices/x",
                          "/v1.6/devices/x"])
        self.older_body_stores_null()

    def older_body_stores_null(self):
        data = json.dumps({
            "key": ["old"], "client_id": ["dev-1"], "username": [None], "topic": ["t"],
            "qos": [1], "retain": [False], "received_at": [1.0], "payload_len": [1],
            "payload": base64.b64encode(b"x").decode()}).encode()
        request = self.post(data)
        self.clock.advance(0.005)
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(self.successResultOf(self.rows(
            "SELECT key, account FROM messages WHERE key = 'old'")), [("old", None)])
