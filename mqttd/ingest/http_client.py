"""The broker's HTTP client for the ingest webhook: treq over its own connection pool.

Everything here exists because a webhook request is on the path of every PUBACK, and
the closed loop of a device waiting for its acknowledgements pays each microsecond of
it. treq and twisted.web's Agent are general clients; three things they do per request
are useless for one fixed webhook address and are done once here instead:

* ``WebhookURL``: treq renders the URL it is given on every request
  (``to_uri().to_text()``, which runs the host through IDNA again); the webhook's URL
  is rendered once, when it is configured.
* ``_WebhookEndpoints``: Agent builds a new ``HostnameEndpoint`` (IDNA again) and, for
  https, a new TLS connection creator on every request, even when the pool then hands
  back a kept-alive connection; here the endpoint for an address is built once.
* ``_BodyBytes``: treq sends ``data=bytes`` through a FileBodyProducer, which writes on
  a later reactor turn; a batch is already in memory and is written at once.

Together about 60 us of a ~300 us request round trip (measured in a loop of POSTs), and
+4-5% QoS 1 throughput with 10 connections at window 10 (benchmarks/README.md).
"""
from hyperlink import EncodedURL
from twisted.internet.defer import succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from mqttd.urls import webhook_uri

__all__ = ["WebhookURL", "build_http_client"]


class WebhookURL(EncodedURL):
    """A URL already in its wire form (a URI), rendered to text once.

    Build it with ``WebhookURL.parse(text)``: any IRI in the text is encoded to a URI
    there, so ``to_uri()`` can return the URL itself afterwards.
    """

    @classmethod
    def parse(cls, text):
        return cls.from_text(webhook_uri(text).to_text())

    def to_uri(self, *args, **kwargs):
        return self  # parse() made it a URI already

    def to_text(self, *args, **kwargs):
        text = self.__dict__.get("_text")
        if text is None:
            text = self.__dict__["_text"] = EncodedURL.to_text(self)
        return text


@implementer(IAgentEndpointFactory)
class _WebhookEndpoints:
    """The endpoint for the webhook's address, built once and reused.

    Endpoints can connect any number of times; the pool calls ``connect`` only when it
    has no kept-alive connection to lend. The last address is kept (the webhook has one;
    the built-in tier's is set once it has bound), so this holds a single entry.
    """

    def __init__(self, reactor, connect_timeout, tls_policy=None):
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._tls_policy = tls_policy if tls_policy is not None else BrowserLikePolicyForHTTPS()
        self._address = None
        self._endpoint = None

    def endpointForURI(self, uri):
        address = (uri.scheme, uri.host, uri.port)
        if address != self._address:
            self._endpoint = self._build(uri)
            self._address = address
        return self._endpoint

    def _build(self, uri):
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the webhook host {uri.host!r} is not ASCII") from None
        endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._connect_timeout)
        if uri.scheme == b"https":
            creator = self._tls_policy.creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint


@implementer(IBodyProducer)
class _BodyBytes:
    """A request body written whole, at once.

    treq turns ``data=bytes`` into a FileBodyProducer, which writes through a
    Cooperator: a reactor turn before the first byte and one more per 64 kB. A batch
    is already in memory, and every turn is latency on the path to a PUBACK.
    """

    __slots__ = ("_body", "length")

    def __init__(self, body):
        if not isinstance(body, bytes):
            raise TypeError(f"webhook bodies are bytes, not {type(body).__name__}")
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _QuietClientFactory(_HTTP11ClientFactory):
    """No "Starting factory" log line per pooled connection."""

    noisy = False


def build_http_client(reactor, config, tls_policy=None):
    """A treq HTTPClient on its own pool (never treq's global one); returns (client, pool).

    ``tls_policy`` (an IPolicyForHTTPS) decides how https webhooks are verified; the
    default verifies against the system's trust store, as browsers do.
    """
    from treq.client import HTTPClient

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = config.pool_size
    pool.retryAutomatically = False  # retries are ours, with the same keys and a deadline
    pool._factory = _QuietClientFactory
    endpoints = _WebhookEndpoints(reactor, config.connect_timeout, tls_policy)
    agent = Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
    return HTTPClient(agent, data_to_body_producer=_BodyBytes), pool
