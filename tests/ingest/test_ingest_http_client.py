"""The webhook's HTTP plumbing: the URL rendered once, the endpoint built once.

What it does over the wire (plain and TLS, against the real ingest tier) is in
tests/ingest/test_ingest_resource.py (LoopbackTests); here, against a webhook that stalls.
"""
import os

import attrs
import twisted.test
from hyperlink import EncodedURL
from twisted.internet import reactor, ssl, tcp
from twisted.internet.endpoints import HostnameEndpoint, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from mqttd.config import WebhookConfig
from mqttd.ingest.client import WebhookSink
from mqttd.ingest.http_client import WebhookURL, _WebhookEndpoints, build_http_client
from tests.support.loopback import until
from tests.support.messages import message

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


class WebhookURLTests(unittest.TestCase):
    def test_an_iri_is_encoded_once_when_parsed(self):
        text = "http://b\u00fccher.example:8080/v1/m\u00e4ssages?x=\u00fc"
        url = WebhookURL.parse(text)
        self.assertEqual(url.to_text(), EncodedURL.from_text(text).to_uri().to_text())
        self.assertEqual(url.to_text(),
                         "http://xn--bcher-kva.example:8080/v1/m%C3%A4ssages?x=%C3%BC")

    def test_an_ip_host_is_kept_and_the_rest_encoded(self):
        # hyperlink's own to_uri() refuses "::1" (IDNA); an HTTP client takes it as is.
        self.assertEqual(WebhookURL.parse("http://[::1]:8080/v1/m\u00e4ssages").to_text(),
                         "http://[::1]:8080/v1/m%C3%A4ssages")
        self.assertEqual(WebhookURL.parse("http://127.0.0.1:8080/v1/messages").to_text(),
                         "http://127.0.0.1:8080/v1/messages")

    def test_rendering_is_not_repeated(self):
        url = WebhookURL.parse("http://127.0.0.1:8080/v1/messages")
        self.assertIs(url.to_uri(), url)
        self.assertIs(url.to_text(), url.to_text())  # the same str object: cached
        self.assertEqual((url.host, url.port, url.path), ("127.0.0.1", 8080, ("v1", "messages")))


class WebhookEndpointsTests(unittest.TestCase):
    def setUp(self):
        self.endpoints = _WebhookEndpoints(MemoryReactorClock(), connect_timeout=2.5)

    def endpoint(self, url):
        return self.endpoints.endpointForURI(URI.fromBytes(url))

    def test_one_endpoint_per_address(self):
        first = self.endpoint(b"http://127.0.0.1:8080/v1/messages")
        self.assertIsInstance(first, HostnameEndpoint)
        self.assertEqual(first._timeout, 2.5)  # connect_timeout reaches the connect
        self.assertIs(self.endpoint(b"http://127.0.0.1:8080/v1/messages"), first)
        other = self.endpoint(b"http://127.0.0.1:8081/v1/messages")
        self.assertIsNot(other, first)
        self.assertIs(self.endpoint(b"http://127.0.0.1:8081/v1/messages"), other)

    def test_https_is_wrapped_in_tls(self):
        plain = self.endpoint(b"http://127.0.0.1:8443/")
        tls = self.endpoint(b"https://127.0.0.1:8443/")
        self.assertNotIsInstance(tls, HostnameEndpoint)
        self.assertIsInstance(tls._wrappedEndpoint, HostnameEndpoint)
        self.assertIsNot(tls, plain)

    def test_other_schemes_are_refused(self):
        self.assertRaises(SchemeNotSupported, self.endpoint, b"ftp://127.0.0.1/")


@implementer(IPolicyForHTTPS)
class _TrustAnything:
    def creatorForNetloc(self, hostname, port):
        return ssl.CertificateOptions(verify=False)


class _StallsMidAnswer(Protocol):
    """Sends a 200's headers and one byte of its body, then hangs (stops reading too)."""

    def dataReceived(self, data):
        if b"\r\n\r\n" in data and not getattr(self, "answered", False):
            self.answered = True
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            self.transport.pauseProducing()


def _client_sockets():
    return [r for r in reactor.getReaders() if isinstance(r, tcp.Client)]


class StalledAnswerTests(unittest.TestCase):
    """A request cut short by its timeout after the headers came closes its connection,
    on real loopback sockets. Before, treq's body read kept it open (outside pool_size,
    one more per retry); over https a plain close would still wait for a close_notify
    the stalled server never sends, so the connection is aborted."""

    timeout = 20

    async def stall(self, scheme, endpoint):
        port = await serverFromString(reactor, endpoint).listen(
            Factory.forProtocol(_StallsMidAnswer))
        self.addCleanup(port.stopListening)
        config = attrs.evolve(WebhookConfig(), request_timeout=0.3, ack_timeout=0.5,
                              retry_initial=5.0, retry_max=5.0)
        http, pool = build_http_client(reactor, config, tls_policy=_TrustAnything())
        self.addCleanup(pool.closeCachedConnections)
        store = WebhookSink(reactor, config, http,
                             f"{scheme}://127.0.0.1:{port.getHost().port}/v1/messages")
        before = len(_client_sockets())
        outcome = []
        store.store(message(1)).addBoth(outcome.append)
        self.assertTrue(await until(lambda: outcome, 5))
        self.assertEqual(outcome[0].value.reason, "ack timeout")
        closed = await until(lambda: len(_client_sockets()) == before, 3)
        for leaked in _client_sockets()[before:]:
            leaked.abortConnection()
        self.assertTrue(closed, f"{scheme}: the webhook connection is still open")

    async def test_http(self):
        await self.stall("http", "tcp:0:interface=127.0.0.1")

    async def test_https(self):
        await self.stall("https", f"ssl:0:interface=127.0.0.1:privateKey={PEM}")
