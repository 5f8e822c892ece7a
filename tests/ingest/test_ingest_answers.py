"""The webhook client reads a 200 strictly (issue 11, point 8).

A 200 makes the broker acknowledge every message of the batch. An ingestion service
that reports a partial rejection inside a 200 (an extra ``rejected`` count, counts that
do not add up) must not get its messages acknowledged: any such answer is a "bad
response", and none of the batch is acknowledged.
"""
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.resource import Resource

from mqttd.config import WebhookConfig
from mqttd.ingest.client import StoreRejected, WebhookSink
from mqttd.ingest.wire import BatchResult, WireError, decode_result
from tests.support.store import message


class _Answers(Resource):
    isLeaf = True

    def __init__(self, body):
        super().__init__()
        self.body = body

    def render_POST(self, request):
        return self.body


def outcome_of(body, count=2):
    """What the client makes of a 200 with ``body`` for a batch of ``count``."""
    http, clock = StubTreq(_Answers(body)), Clock()
    store = WebhookSink(clock, WebhookConfig(), http, "http://ingest.invalid/v1/messages")
    outcomes = []
    for i in range(count):
        store.store(message(f"k{i}")).addBoth(outcomes.append)
    clock.advance(0)
    http.flush()
    return store, [o if o is None else o.trap(StoreRejected) and o.value.reason
                   for o in outcomes]


class StrictAnswerTests(unittest.TestCase):
    def test_a_partial_rejection_inside_a_200_acknowledges_nothing(self):
        for body in (b'{"received": 2, "inserted": 1, "duplicates": 0, "rejected": 1}',
                     b'{"received": 2, "inserted": 2, "duplicates": 0, "errors": []}',
                     b'{"received": 2, "inserted": 1, "duplicates": 0}',
                     b'{"received": 2, "inserted": 2, "duplicates": 2}',
                     b'{"received": 2, "inserted": 2}',
                     b'{"received": 2, "inserted": true, "duplicates": 1}',
                     b'{"received": 3, "inserted": 3, "duplicates": 0}',
                     b'{"received": 1, "inserted": 1, "duplicates": 0}',
                     b'[2, 2, 0]'):
            store, outcomes = outcome_of(body)
            self.assertEqual(outcomes, ["bad response"] * 2, body)
            self.assertEqual((store.metrics.webhook_committed, store.metrics.webhook_rejected["bad response"]), (0, 2), body)
        store, outcomes = outcome_of(b'{"received": 2, "inserted": 1, "duplicates": 1}')
        self.assertEqual((outcomes, store.metrics.webhook_committed, store.metrics.webhook_already_stored), ([None, None], 2, 1))

    def test_errors_say_what_is_wrong(self):
        cases = {
            b'{"received": 2, "inserted": 1, "duplicates": 0, "rejected": 1}':
                "result: must hold exactly received, inserted and duplicates (unknown rejected)",
            b'{"received": 2, "inserted": 2}':
                "result: must hold exactly received, inserted and duplicates "
                "(missing duplicates)",
            b'{"received": 2, "inserted": 1, "duplicates": 0}':
                "result: counts do not add up: received 2, inserted 1, duplicates 0",
            b'{"received": 3, "inserted": 3, "duplicates": 0}': "result: 3 received of 2 sent",
            b'"ok"': "result: not a batch result: a JSON str",
        }
        for body, error in cases.items():
            with self.assertRaises(WireError) as caught:
                decode_result(body, 2)
            self.assertEqual(str(caught.exception), error)
        self.assertEqual(decode_result(b'{"duplicates": 1, "inserted": 1, "received": 2}', 2),
                         BatchResult(2, 1))
