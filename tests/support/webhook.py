"""The webhook client's unit-test harness: a ``WebhookSink`` on a ``Clock``, talking
through treq's ``StubTreq`` to ``Webhook``, a scriptable ingest endpoint.

Shared by the webhook client's tests and the broker's end-to-end ingest tests, so it is
here rather than in either.
"""
import json

import attrs
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from mqttd.config import WebhookConfig
from mqttd.ingest.client import StoreRejected, WebhookSink
from mqttd.ingest.wire import decode_batch

URL = "http://ingest.invalid/v1/messages"


class Webhook(Resource):
    """A scriptable ingest endpoint: answers from ``script`` (code or None = hang), then 200."""

    isLeaf = True

    def __init__(self, script=()):
        super().__init__()
        self.script = list(script)
        self.bodies = []
        self.hanging = []
        self.stored = {}

    def render_POST(self, request):
        body = request.content.read()
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else 200
        if step is None:
            self.hanging.append(request)
            return NOT_DONE_YET
        if step != 200:
            request.setResponseCode(step)
            if step == 503:
                request.setHeader(b"Retry-After", b"1")
            return b'{"error": "scripted"}'
        rows = decode_batch(body)
        inserted = 0
        for key, _, _, _, payload, *_ in rows:
            if key not in self.stored:
                self.stored[key] = payload
                inserted += 1
        return json.dumps({"received": len(rows), "inserted": inserted,
                           "duplicates": len(rows) - inserted}).encode()


class Harness:
    """``http``: a function of the StubTreq over ``webhook`` that returns the HTTP client
    the sink posts through (a wrapper that fails some requests, say); StubTreq itself
    by default."""

    def __init__(self, testcase, script=(), clock=None, http=None, **config):
        self.clock = Clock() if clock is None else clock
        self.webhook = Webhook(script)
        self.http = StubTreq(self.webhook)
        self.config = attrs.evolve(WebhookConfig(), **config)
        client = self.http if http is None else http(self.http)
        self.store = WebhookSink(self.clock, self.config, client, URL, random=lambda: 1.0)
        self.testcase = testcase

    def submit(self, *messages):
        results = []
        for m in messages:
            d = self.store.store(m)
            outcome = []
            d.addCallbacks(lambda _, o=outcome: o.append("ok"),
                           lambda f, o=outcome: o.append(f.trap(StoreRejected) and f.value.reason))
            results.append(outcome)
        return results

    def tick(self, seconds=0.0):
        self.clock.advance(seconds)
        self.http.flush()

    def assertAccounts(self):
        s = self.store
        self.testcase.assertEqual(s.metrics.webhook_submitted, s.metrics.webhook_committed + s.metrics.webhook_pending + sum(s.metrics.webhook_rejected.values()))
