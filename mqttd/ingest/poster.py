"""One POST of a batch body to the ingest webhook, and what its answer means.

The webhook client (``mqttd.ingest.client``) decides what to send and when; this is how
a body is sent and how the answer is read: the headers every request carries, the URL
rendered once, the answer's body read whole and cancellably, and the answer classified
into what the client must do next:

* 200: the body, for ``mqttd.ingest.wire.decode_result`` to read strictly;
* 429 and 5xx: ``RetryableStatus`` (with the server's Retry-After), once the body is
  read to its end, so the connection can go back to the pool;
* any other 4xx: ``Refused`` (the same body cannot succeed);
* no address yet (the built-in tier is still binding): ``NoAddress``, retryable.
"""
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from mqttd.ingest.credentials import AUTHORIZATION, bearer
from mqttd.ingest.http_client import WebhookURL
from mqttd.ingest.wire import CONTENT_TYPE

__all__ = ["WebhookPoster", "RetryableStatus", "Refused", "NoAddress", "describe"]


class RetryableStatus(Exception):
    """An HTTP answer worth retrying (429, 5xx); may carry the server's Retry-After."""

    def __init__(self, code, retry_after):
        super().__init__(f"HTTP {code}")
        self.code = code
        self.retry_after = retry_after


class Refused(Exception):
    """The webhook answered a 4xx other than 429: retrying the same body cannot help."""

    def __init__(self, code, body):
        super().__init__(f"http {code}: {body}")
        self.code = code


class NoAddress(Exception):
    """The URL is not known yet (the built-in ingest tier is still binding); retryable."""


def describe(error):
    """A one-line reason for a failed request (treq wraps causes in lists of Failures)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(f"{r.type.__name__}: {r.getErrorMessage()}" for r in reasons)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def request_headers(secret, extra):
    """Every request's headers: Content-Type, ``Authorization: Bearer`` when there is a
    ``secret``, and the ``extra`` (name, value) pairs an ingestion service of your own
    may need (``webhook.headers``). Built once: the same for every request."""
    headers = {b"Content-Type": [CONTENT_TYPE.encode("ascii")]}
    if secret:
        headers[AUTHORIZATION] = [bearer(secret)]
    for name, value in extra:
        headers.setdefault(name.encode("ascii"), []).append(value.encode("ascii"))
    return headers


class _AnswerBody(Protocol):
    """An answer's body, read whole; cancelling ``finished`` aborts the connection.

    treq's ``content()`` cannot be cancelled: a request cut short by its timeout after
    the headers came kept its connection open until the server gave up, outside
    ``pool_size``, and every retry opened one more. Here the timeout that cancels the
    request also ends the read and its connection.
    """

    def __init__(self):
        self._chunks = []
        self.finished = Deferred(self._cancel)

    def _cancel(self, _):
        transport = self.transport
        if transport is None:
            return
        # Abort, not close: over https loseConnection only sends close_notify and waits
        # for the server's, which a server stalled mid-answer never sends. Twisted hands
        # the body a proxy of the connection (_newclient.TransportProxyProducer) with no
        # abortConnection of its own; the connection it proxies has one.
        connection = getattr(transport, "_producer", None)
        abort = getattr(connection, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    def dataReceived(self, data):
        self._chunks.append(data)

    def connectionLost(self, reason):
        if self.finished.called:  # cancelled: the close that caused is no news
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)


def _answer_body(response):
    """A Deferred of ``response``'s whole body (cancellable: see _AnswerBody)."""
    body = _AnswerBody()
    response.deliverBody(body)
    return body.finished


class WebhookPoster:
    """POSTs bodies to one webhook URL. ``http`` is a treq HTTPClient (or StubTreq).

    ``secret``: sent as ``Authorization: Bearer`` with every request (the built-in
    tier's, or ``webhook.secret``); None: no Authorization header. ``headers`` (name,
    value pairs: ``webhook.headers``) go with every request either way.
    """

    def __init__(self, http, url, secret=None, headers=()):
        self._http = http
        self._headers = request_headers(secret, headers)
        # Rendered once (treq would render it on every request); None until the
        # built-in ingest tier has bound its port.
        self._url = None if url is None else WebhookURL.parse(url)

    @property
    def url(self):
        """Where bodies go, as text; None until the built-in ingest tier has bound."""
        return None if self._url is None else self._url.to_text()

    def set_url(self, url):
        self._url = WebhookURL.parse(url)

    def post(self, body):
        """A Deferred of the 200 answer's body, or the failure that says what to do;
        cancelling it (a timeout) also ends the read of an answer and its connection."""
        if self._url is None:
            return fail(NoAddress("the built-in ingest tier has no address yet"))
        # A webhook answers, it does not redirect: no RedirectAgent layer per request;
        # unbuffered: the body is read once, by _answer_body (no buffering wrapper).
        d = self._http.post(self._url, data=body, headers=self._headers,
                            allow_redirects=False, unbuffered=True)
        return d.addCallback(self._read)

    def _read(self, response):
        code = response.code
        body = _answer_body(response)
        if code == 200:
            return body
        if code == 429 or code >= 500:
            retry_after = response.headers.getRawHeaders(b"Retry-After", [None])[0]
            # Read to the end, under the request's own timeout, so the connection can
            # go back to the pool; then retry.
            return body.addBoth(self._retryable, code, retry_after)
        return body.addCallback(self._refused, code)

    @staticmethod
    def _retryable(result, code, retry_after):
        if isinstance(result, Failure) and result.check(CancelledError):
            return result  # cut short by the timeout: that is the reason to report
        raise RetryableStatus(code, retry_after)

    @staticmethod
    def _refused(body, code):
        raise Refused(code, body[:200].decode("utf-8", "replace"))
