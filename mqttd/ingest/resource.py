"""The ingest webhook: ``POST /v1/messages`` answers 200 only after the rows are committed.

Status codes are the contract the broker's client acts on (docs/ingest-webhook.md):

- 401 (``WWW-Authenticate: Bearer``): no ``Authorization: Bearer SECRET`` header with
  the tier's secret (``mqttd.ingest.credentials``); checked first, and such a body is
  never buffered, decoded or stored.
- 200 ``{"received", "inserted", "duplicates"}``: every message of the body is in the
  database (new, or already there from an earlier try). PUBACK them.
- 400 ``{"error": reason}``: the body is malformed; nothing of it was stored. Retrying
  the same body cannot help.
- 405 not POST; 404 any other path; 413 body over ``max_body_size``.
- 503 + ``Retry-After: 1``: queue full, too many bytes of bodies being received
  (``mqttd.ingest.request``) or shutting down; nothing stored; retry.
- 500: the commit failed (rolled back); nothing of this body counts as stored; retry.
- 409 ``{"error": reason}``: a key of the body is already stored with other contents
  (a forged row, or a bug); nothing of this body is stored. Never "already stored": a
  client that took it for that would acknowledge a message the database does not hold.

A client that disconnects before the answer loses nothing: its rows still commit, and
the retry it sends finds them already stored (duplicates, not new rows).
"""
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mqttd.ingest.credentials import CHALLENGE, authorized, bearer

from mqttd.ingest.wire import (
    CONTENT_TYPE,
    PATH,
    BatchResult,
    WireError,
    decode_batch,
    encode_error,
    encode_result,
)
from mqttd.ingest.request import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_RECEIVING_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    BodyBudget,
    request_factory,
    seldom,
)
from mqttd.ingest.writer import Unavailable
from mqttd.store.sqlite import KeyConflict

log = Logger()


class IngestResource(Resource):
    """POST a wire-format batch; the answer waits for the COMMIT that holds it.

    The body is validated whole (``decode_batch``, column by column) before anything is
    queued; its rows go to the writer as the tuples it returns. ``secret`` is what the
    ``Authorization: Bearer`` header of every request must carry.
    """

    isLeaf = True

    def __init__(self, writer, secret, max_body_size=DEFAULT_MAX_BODY_SIZE, metrics=None):
        super().__init__()
        self.writer = writer
        self.max_body_size = max_body_size
        self.authorization = bearer(secret)
        # Requests by outcome: the registry's ``ingest_requests`` (the writer's, by default).
        self.metrics = writer.metrics if metrics is None else metrics
        self._outcomes = self.metrics.ingest_requests

    def render(self, request):
        if not authorized(request.requestHeaders, self.authorization):
            return self._refuse_unauthorized(request)
        if request.postpath not in ([], [b""]):
            return _answer(request, 404, "no such resource")
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return _answer(request, 405, "method not allowed; POST a batch")
        return self.render_POST(request)

    def _refuse_unauthorized(self, request):
        self._outcomes["unauthorized"] += 1
        count = self._outcomes["unauthorized"]
        if seldom(count):
            log.warn("ingest: refused a request without the webhook secret from {peer} "
                     "({count} so far)", peer=str(request.getClientAddress()), count=count)
        request.setHeader(*CHALLENGE)
        return _answer(request, 401, "unauthorized: send Authorization: Bearer <secret>")

    def render_POST(self, request):
        if getattr(request, "over_budget", False):
            return self._unavailable(request, (
                f"too many bytes of request bodies being received at once "
                f"(max_receiving_bytes {request.budget.limit}); nothing stored"))
        if getattr(request, "body_too_large", False) or _content_length(request) > self.max_body_size:
            self._outcomes["too_large"] += 1
            return _answer(request, 413, f"body larger than max_body_size ({self.max_body_size} bytes)")
        request.content.seek(0)
        body = request.content.read(self.max_body_size + 1)
        if len(body) > self.max_body_size:
            self._outcomes["too_large"] += 1
            return _answer(request, 413, f"body larger than max_body_size ({self.max_body_size} bytes)")
        try:
            rows = decode_batch(body)
        except WireError as e:
            self._outcomes["malformed"] += 1
            return _answer(request, 400, str(e))
        try:
            d = self.writer.submit(rows, len(body))
        except Unavailable as e:
            return self._unavailable(request, str(e))

        gone = []
        request.notifyFinish().addErrback(gone.append)

        def committed(inserted):
            self._outcomes["accepted"] += 1
            if not gone:
                _finish(request, 200, encode_result(BatchResult(len(rows), inserted)))

        def failed(failure):
            if failure.check(KeyConflict):
                self._outcomes["conflict"] += 1
                log.warn("ingest: refused a batch of {n} from {peer}: {reason}", n=len(rows),
                         peer=str(request.getClientAddress()), reason=failure.getErrorMessage())
                if not gone:
                    _finish(request, 409, encode_error(failure.getErrorMessage()))
                return
            self._outcomes["error"] += 1
            if not gone:
                _finish(request, 500, encode_error(
                    f"commit failed, nothing stored: {failure.getErrorMessage()}"))

        d.addCallbacks(committed, failed)
        d.addErrback(lambda f: log.failure("ingest: answering a batch failed", f))
        return NOT_DONE_YET


    def _unavailable(self, request, reason):
        self._outcomes["unavailable"] += 1
        request.setHeader(b"Retry-After", b"1")
        return _answer(request, 503, reason)


def _content_length(request):
    value = request.getHeader(b"content-length")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _answer(request, code, reason):
    """Set an error answer and return its body (for a synchronous render)."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", CONTENT_TYPE.encode("ascii"))
    return encode_error(reason)


def _finish(request, code, body):
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", CONTENT_TYPE.encode("ascii"))
    # Without a length twisted.web sends the answer chunked: more framing to write and
    # for the broker's client to parse, on every batch.
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


class _IngestSite(Site):
    """A Site without a per-request access log: the webhook sees thousands a second,
    and the worker already traces each batch."""

    def log(self, request):
        pass


def build_ingest_site(clock, writer, secret, max_body_size=DEFAULT_MAX_BODY_SIZE,
                      request_timeout=DEFAULT_REQUEST_TIMEOUT,
                      max_receiving_bytes=DEFAULT_MAX_RECEIVING_BYTES, path=PATH):
    """A twisted.web Site serving IngestResource at ``path`` (default /v1/messages) to
    requests carrying ``secret``; each must be in whole within ``request_timeout``
    seconds (on ``clock``), and their bodies being received hold at most
    ``max_receiving_bytes`` together (``site.budget``)."""
    resource = IngestResource(writer, secret, max_body_size)
    budget = BodyBudget(max_receiving_bytes)
    root = Resource()
    parent = root
    segments = path.strip(b"/").split(b"/")
    for segment in segments[:-1]:
        child = Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(segments[-1], resource)

    # parsePOSTFormSubmission: twisted.web would otherwise parse the Content-Type of
    # every POST with the email package (to find form uploads); bodies here are JSON.
    factory = request_factory(max_body_size, resource.authorization, budget, clock,
                              request_timeout)
    site = _IngestSite(root, requestFactory=factory, parsePOSTFormSubmission=False)
    site.budget = budget
    site.displayTracebacks = False
    site.noisy = False
    site.ingest = resource
    return site
