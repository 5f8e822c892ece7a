"""The real WebhookSink on a ``task.Clock`` with its webhook held: ``HeldWebhook``
answers nothing until the test says so, so the sink fills up and says so
(``Pressure``, heard by ``Events``). ``StoreHarness`` is the sink alone,
``BrokerHarness`` the real Broker over it. Shared by the overload tests and the tests
of how the overload pause meets the rest of a connection's life.
"""
import json

import attrs
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.config import AuthConfig, BrokerConfig, WebhookConfig
from mqttd.ingest.client import StoreRejected, WebhookSink
from mqttd.ingest.wire import decode_batch
from tests.support.broker import Harness
from tests.support.webhook import URL


class HeldWebhook(Resource):
    """An ingest endpoint that answers nothing until ``answer()`` commits what it holds."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.held = []  # [(request, rows)]
        self.stored = []

    def render_POST(self, request):
        self.held.append((request, decode_batch(request.content.read())))
        return NOT_DONE_YET

    def answer(self):
        held, self.held = self.held, []
        for request, rows in held:
            self.stored.extend(rows)
            request.write(json.dumps({"received": len(rows), "inserted": len(rows), "duplicates": 0}).encode())
            request.finish()
        return sum(len(rows) for _, rows in held)


class Events:
    """A pressure listener that records what it heard."""

    def __init__(self, pressure):
        self.heard = []
        pressure.subscribe(lambda: self.heard.append("full"),
                           lambda: self.heard.append("drained"))


class StoreHarness:
    """The real WebhookSink on a Clock, its webhook held (HeldWebhook)."""

    def __init__(self, **config):
        self.clock = Clock()
        self.webhook = HeldWebhook()
        self.http = StubTreq(self.webhook)
        config = attrs.evolve(WebhookConfig(), **dict(
            dict(linger=0.0, ack_timeout=10.0, request_timeout=100.0), **config))
        self.store = WebhookSink(self.clock, config, self.http, URL)
        self.events = Events(self.store.pressure)
        self.outcomes = []

    def submit(self, *messages):
        for m in messages:
            self.store.submit(m, self._notify, m.key)

    def _notify(self, tokens, failure):
        outcome = "ok" if failure is None else failure.trap(StoreRejected) and failure.value.reason
        self.outcomes.extend((token, outcome) for token in tokens)

    def send(self):
        """Let waiting batches leave (batch_delay 0: the next turn)."""
        self.clock.advance(0)
        self.http.flush()

    def answer(self):
        n = self.webhook.answer()
        self.http.flush()
        return n


class BrokerHarness(StoreHarness):
    """The broker over the same store; clients as in tests/support/broker.py."""

    def __init__(self, **webhook):
        super().__init__(**webhook)
        self.broker = Broker(self.clock, BrokerConfig(), self.store,
                             StaticAuthenticator(AuthConfig(allow_anonymous=True)))
        self.factory = MQTTServerFactory(self.broker, self.clock)

    client = Harness.client
    subscriber = Harness.subscriber

    def answer(self):
        n = super().answer()
        self.clock.advance(0)  # drained is said on the next turn
        return n
