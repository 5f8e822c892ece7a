"""The webhook's HTTP plumbing: the URL rendered once, the endpoint built once.

What it does over the wire (plain and TLS, against the real ingest tier) is in
tests/test_ingest_resource.py (LoopbackTests).
"""
from hyperlink import EncodedURL
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported

from mqttd.ingest.http_client import WebhookURL, _WebhookEndpoints


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
