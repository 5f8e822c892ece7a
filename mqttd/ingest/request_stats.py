"""What the webhook client's requests did, in the registry: the figures the incident's
team had to find by hand (the pool too small, the timeout too short).

- ``webhook_requests{outcome}``: every request once it is answered or given up;
- ``webhook_request_seconds``: a histogram of the time from its send to that moment;
- ``webhook_requests_in_flight`` against ``webhook_pool_size``: how full the pool is;
- ``webhook_retried{cause}``: why requests are sent again, so the alert on retries
  (``mqttd.manage.guardrails``) can name the key to change: a timeout is
  ``webhook.request_timeout``, an HTTP 503 from the built-in tier its full queue.

Counted per request, never per message: a request carries a batch.
"""
from twisted.internet import error as net
from twisted.internet.defer import CancelledError, TimeoutError as DeferredTimeout
from twisted.web.client import (RequestTransmissionFailed, ResponseFailed,
                                ResponseNeverReceived)

from mqttd.ingest.poster import NoAddress, RetryableStatus

__all__ = ["RequestStats", "retry_cause"]

_TIMEOUTS = (DeferredTimeout, CancelledError, TimeoutError, net.TimeoutError)
_CONNECTION = (net.ConnectError, net.ConnectionLost, net.ConnectionDone, ResponseFailed,
               ResponseNeverReceived, RequestTransmissionFailed, ConnectionError)


def retry_cause(error):
    """The ``webhook_retried`` label of a retryable failure: timeout, connection,
    ``http 429`` / ``http 5xx`` (the status itself), no address, other. A request cut
    short by its timeout fails as treq's ResponseNeverReceived of a CancelledError (or
    ResponseFailed, once the headers came): a timeout, not a connection error."""
    if isinstance(error, _TIMEOUTS) or any(
            reason.check(*_TIMEOUTS) for reason in getattr(error, "reasons", None) or ()):
        return "timeout"
    if isinstance(error, RetryableStatus):
        return f"http {error.code}"
    if isinstance(error, NoAddress):
        return "no address"
    if isinstance(error, _CONNECTION):
        return "connection"
    return "other"


class RequestStats:
    """``sent()`` when a request leaves (its start time back), ``answered(started,
    outcome)`` once it has its answer or failure, ``retried(error)`` when it is to be
    sent again."""

    def __init__(self, clock, metrics, pool_size):
        self._clock = clock
        self._metrics = metrics
        metrics.webhook_pool_size = pool_size

    def sent(self):
        self._metrics.webhook_requests_in_flight += 1
        return self._clock.seconds()

    def answered(self, started, outcome):
        metrics = self._metrics
        metrics.webhook_requests_in_flight -= 1
        metrics.webhook_requests[outcome] += 1
        metrics.webhook_request_seconds.observe(self._clock.seconds() - started)

    def retried(self, error):
        self._metrics.webhook_retried[retry_cause(error)] += 1
