"""The webhook's HTTP request: what of a body it buffers, for whom, and for how long.

twisted.web buffers a whole body before the resource renders, with no limit of its own:
a stalled upload of a big body pinned its bytes for as long as its client kept the
connection open. Here a body is buffered only while it can still be answered with
anything but an error:

- not past ``max_body_size`` (the resource then answers 413);
- not without the right ``Authorization`` header, checked once the headers are in
  (the resource answers 401): an unauthenticated body is never buffered, decoded or
  stored, only read off the socket and dropped;
- not past the site's ``BodyBudget``: the bytes of every body being received at once,
  across all requests (``ingest.max_receiving_bytes``; the resource answers 503). So
  memory holds at most max(max_receiving_bytes, max_body_size) of partial bodies.

Past any of them, the rest is read and dropped: the flag tells the resource what to
answer. And a request must be in whole (headers and body) within ``request_timeout``
of its first line (``ingest.request_timeout``), or its connection is closed and what it
held is freed: nobody can hold memory, or a connection, by going silent.
"""
from io import BytesIO

from twisted.logger import Logger
from twisted.web.server import Request

from mqttd.ingest.credentials import authorized

log = Logger()

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_RECEIVING_BYTES = 64 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 5.0


def seldom(count):
    """Whether the ``count``-th event of a kind is logged: the 1st, 2nd, 4th, 8th...,
    so that a flood of them cannot fill the log (each is counted anyway)."""
    return count & (count - 1) == 0


class BodyBudget:
    """The bytes of request bodies being received (not yet complete), site-wide."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        # Counters (requests).
        self.refused = 0  # over the budget: answered 503
        self.timed_out = 0  # not in whole within request_timeout: connection closed

    def take(self, size, held):
        """Count ``size`` more bytes for a request that holds ``held`` already; False
        (nothing counted) if that is over the limit, unless that request is the only
        one receiving: as the writer's queue, an otherwise empty budget admits a body
        up to max_body_size, so a limit below it cannot refuse a big body for ever."""
        if self.used + size > self.limit and self.used != held:
            return False
        self.used += size
        return True

    def give_back(self, size):
        self.used -= size


class IngestRequest(Request):
    """A request whose body buffer is bounded; ``request_factory`` sets the limits."""

    max_body_size = DEFAULT_MAX_BODY_SIZE
    authorization = None  # the Authorization value expected (bytes); None: no check here
    budget = None  # the site's BodyBudget; None: no budget
    clock = None  # with request_timeout, the deadline of a request; None: no deadline
    request_timeout = None
    body_too_large = False
    unauthorized = False
    over_budget = False

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, **kwargs)
        self._held = 0  # bytes of body buffered (and taken from the budget)
        self._deadline = None
        if self.clock is not None:
            self._deadline = self.clock.callLater(self.request_timeout, self._too_slow)

    def gotLength(self, length):
        # In memory, always: twisted.web would spool bodies of 100 kB or more to a
        # temporary file (a create, write and read per batch on the hot path). The body
        # is bounded by max_body_size and read whole by the resource anyway.
        self.content = BytesIO()
        if self.authorization is not None and not authorized(self.requestHeaders,
                                                             self.authorization):
            self.unauthorized = True
        elif length is not None and length > self.max_body_size:
            self.body_too_large = True

    def handleContentChunk(self, data):
        if self.body_too_large or self.unauthorized or self.over_budget:
            return
        size = len(data)
        if self._held + size > self.max_body_size:
            self.body_too_large = True
            self._drop_body()
        elif self.budget is not None and not self.budget.take(size, self._held):
            self.over_budget = True
            self.budget.refused += 1
            self._drop_body()
        else:
            self._held += size
            self.content.write(data)

    def requestReceived(self, command, path, version):
        # In whole: no deadline any more (the commit takes what it takes; the client's
        # own timeout covers it), and the writer's max_queue_bytes takes over the bytes.
        self._stop_deadline()
        self._give_back()
        super().requestReceived(command, path, version)

    def connectionLost(self, reason):
        self._stop_deadline()
        self._give_back()
        super().connectionLost(reason)

    def _too_slow(self):
        self._deadline = None
        budget = self.budget
        if budget is not None:
            budget.timed_out += 1
            count = budget.timed_out
            if seldom(count):
                log.warn("ingest: a request from {peer} was not in whole within "
                         "ingest.request_timeout ({timeout} s); connection closed "
                         "({count} so far)", peer=str(self.getClientAddress()),
                         timeout=self.request_timeout, count=count)
        self._drop_body()
        self.transport.abortConnection()  # the client may read nothing: no graceful close

    def _drop_body(self):
        self._give_back()
        self.content = BytesIO()

    def _give_back(self):
        if self.budget is not None:
            self.budget.give_back(self._held)
        self._held = 0

    def _stop_deadline(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def request_factory(max_body_size, authorization, budget=None, clock=None,
                    request_timeout=None):
    """An IngestRequest class with these limits (twisted.web builds one per request)."""
    return type("IngestRequest", (IngestRequest,), {
        "max_body_size": max_body_size, "authorization": authorization, "budget": budget,
        "clock": clock, "request_timeout": request_timeout})
