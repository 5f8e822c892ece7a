"""Every webhook request is authenticated (issue 11, point 1).

A local user POSTed rows with any client id and got 200. Now a request needs
``Authorization: Bearer SECRET``: the built-in tier's secret is made at start (or
``ingest.secret``) and shared with the broker's own client in-process; a client of
``webhook.url`` sends ``webhook.secret`` and ``webhook.headers``.
"""
import json

import attrs
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from mqttd.config import WebhookConfig, parse_config
from mqttd.ingest.client import WebhookSink
from mqttd.ingest.credentials import bearer
from mqttd.ingest.request import request_factory
from mqttd.ingest.wire import encode_batch
from mqttd.service import build_service
from tests.support.config import ConfigErrorAssertions
from tests.support.ingest import SECRET, ResourceTestCase
from tests.support.store import message


class ResourceAuthTests(ResourceTestCase):
    def test_401_without_the_secret_and_nothing_stored(self):
        batch = encode_batch([message("k1")])
        for authorization in (None, [b"Bearer wrong-secret-0123456789"], [b"Bearer "],
                              [SECRET.encode()], [bearer(SECRET), bearer(SECRET)]):
            request = self.post(batch, authorization=authorization)
            self.assertEqual(request.responseCode, 401, authorization)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"www-authenticate"),
                             [b'Bearer realm="mqttd-ingest"'])
            self.assertIn("unauthorized", self.answer(request)["error"])
        # Even a wrong path or method learns nothing more than 401.
        self.assertEqual(self.post(batch, postpath=[b"x"], authorization=None).responseCode, 401)
        self.clock.advance(1.0)
        self.assertEqual((self.stored(), self.resource.metrics.ingest_requests["unauthorized"]), (0, 6))
        request = self.post(batch)
        self.clock.advance(1.0)
        self.assertEqual(request.responseCode, 200)

    def test_an_unauthenticated_body_is_never_buffered(self):
        request = request_factory(4096, bearer(SECRET))(DummyChannel())
        request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer guess"])
        request.gotLength(5)
        request.handleContentChunk(b"12345")
        self.assertTrue(request.unauthorized)
        self.assertEqual(request.content.getvalue(), b"")
        allowed = request_factory(4096, bearer(SECRET))(DummyChannel())
        allowed.requestHeaders.setRawHeaders(b"authorization", [bearer(SECRET)])
        allowed.gotLength(5)
        allowed.handleContentChunk(b"12345")
        self.assertEqual(allowed.content.getvalue(), b"12345")


class _Recorder(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.headers = []

    def render_POST(self, request):
        self.headers.append(request.requestHeaders)
        n = len(json.loads(request.content.read())["key"])
        return json.dumps({"received": n, "inserted": n, "duplicates": 0}).encode()


class ClientCredentialsTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_webhook_secret_and_headers_go_with_every_request(self):
        config = parse_config({"webhook": {
            "url": "http://ingest.invalid/v1/messages", "secret": "service-token",
            "headers": {"X-Api-Key": "key 1", "X-Tenant": "plant-4"}}}).webhook
        recorder = _Recorder()
        store = WebhookSink(reactor, config, StubTreq(recorder), config.url,
                             secret=config.secret)
        yield store.store(message("k1"))
        yield store.store(message("k2"))
        self.assertEqual(len(recorder.headers), 2)
        for headers in recorder.headers:
            self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer service-token"])
            self.assertEqual(headers.getRawHeaders(b"x-api-key"), [b"key 1"])
            self.assertEqual(headers.getRawHeaders(b"x-tenant"), [b"plant-4"])
        # No secret: no Authorization at all.
        recorder = _Recorder()
        store = WebhookSink(reactor, WebhookConfig(), StubTreq(recorder), config.url)
        yield store.store(message("k1"))
        self.assertIsNone(recorder.headers[0].getRawHeaders(b"authorization"))


class BuiltInTierTests(unittest.TestCase):
    """The built-in tier and the broker's client share a secret made at start."""

    @defer.inlineCallbacks
    def test_the_broker_gets_the_secret_in_process_and_nobody_else(self):
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        data_dir = self.mktemp()
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": data_dir,
                                          "listen": ["tcp:0:interface=127.0.0.1"]}})
        root = build_service(config, reactor)
        ingest = root.ingest
        root.privilegedStartService()
        root.startService()
        self.addCleanup(root.stopService)
        yield root.webhook.store(message("k1"))  # the broker's own client: accepted
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = yield HTTPClient(Agent(reactor, pool=pool)).post(
            root.webhook.url, data=encode_batch([message("k2")]))
        self.assertEqual(response.code, 401)
        yield response.content()
        self.assertEqual((yield ingest.store.count()), 1)
        # A secret of its own at every start, never in the log.
        authorization = ingest.site.ingest.authorization
        self.assertGreaterEqual(len(authorization), len(b"Bearer ") + 40)
        again = build_service(config, reactor).ingest.site.ingest.authorization
        self.assertNotEqual(again, authorization)
        secret = authorization.split(b" ")[1].decode()
        logged = " ".join(str(e) for e in events)
        self.assertNotIn(secret, logged)
        self.assertNotIn(secret, repr(config))

    def test_ingest_secret_is_the_tiers(self):
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp()},
                               "ingest": {"secret": "x" * 16}})
        self.assertNotIn("x" * 16, repr(config))
        root = build_service(config, reactor)
        self.assertEqual(root.ingest.site.ingest.authorization, b"Bearer " + b"x" * 16)


class CredentialConfigTests(ConfigErrorAssertions, unittest.TestCase):
    def test_bad_secrets_and_headers_name_their_key_not_their_value(self):
        url = "http://ingest.invalid/v1/messages"
        self.assertConfigError(
            {"ingest": {"secret": "short"}},
            "ingest.secret: must be at least 16 visible ASCII characters (no spaces), "
            "or empty to make one at every start")
        self.assertConfigError(
            {"ingest": {"secret": "sixteen chars spaced"}},
            "ingest.secret: must be at least 16 visible ASCII characters (no spaces), "
            "or empty to make one at every start")
        self.assertConfigError({"webhook": {"url": url, "secret": "tok\r\nX-Evil: 1"}},
                               "webhook.secret: must be visible ASCII characters (no spaces)")
        self.assertConfigError(
            {"webhook": {"secret": "token"}},
            "webhook.secret: only for webhook.url (the built-in ingest tier's secret is "
            "ingest.secret, shared with the broker in-process)")
        self.assertConfigError({"webhook": {"url": url, "headers": {"X Y": "v"}}},
                               "webhook.headers: 'X Y' is not a valid HTTP header name")
        self.assertConfigError({"webhook": {"url": url, "headers": {"Content-Length": "1"}}},
                               "webhook.headers.Content-Length: set by the webhook client itself")
        self.assertConfigError({"webhook": {"url": url, "secret": "t",
                                            "headers": {"Authorization": "Basic x"}}},
                               "webhook.headers.Authorization: webhook.secret already sends "
                               "Authorization")
        for value in ("v\r\nX-Evil: 1", " v", ""):
            self.assertConfigError(
                {"webhook": {"url": url, "headers": {"X-Key": value}}},
                "webhook.headers.X-Key: the value must be visible ASCII (spaces and tabs "
                "only inside it)")
        self.assertConfigError({"webhook": {"url": url, "headers": {"X-Key": 1}}},
                               "webhook.headers.X-Key: must be a string, got 1")
        self.assertConfigError({"webhook": {"url": url, "headers": ["X-Key"]}},
                               "webhook.headers: must be a table of strings, got ['X-Key']")
        config = parse_config({"webhook": {"url": url, "secret": "tok",
                                           "headers": {"X-Key": "hidden value"}}})
        self.assertEqual(config.webhook.headers, (("X-Key", "hidden value"),))
        self.assertNotIn("hidden value", repr(config))
        self.assertEqual(attrs.evolve(config.webhook).secret, "tok")
