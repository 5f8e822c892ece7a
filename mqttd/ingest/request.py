"""The webhook's HTTP request: what of a body it buffers, and for whom.

twisted.web buffers a whole body before the resource renders, with no limit of its own.
Here a body is buffered only while it can still be answered with anything but an error:

- not past ``max_body_size`` (the resource then answers 413);
- not without the right ``Authorization`` header, checked once the headers are in
  (the resource answers 401): an unauthenticated body is never buffered, decoded or
  stored, only read off the socket and dropped.

Past either, the rest is read and dropped: the flag tells the resource what to answer.
"""
from io import BytesIO

from twisted.web.server import Request

from mqttd.ingest.credentials import authorized

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024


class IngestRequest(Request):
    """A request whose body buffer is bounded; ``request_factory`` sets the limits."""

    max_body_size = DEFAULT_MAX_BODY_SIZE
    authorization = None  # the Authorization value expected (bytes); None: no check here
    body_too_large = False
    unauthorized = False

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
        if self.body_too_large or self.unauthorized:
            return
        if self.content.tell() + len(data) > self.max_body_size:
            self.body_too_large = True
            self.content = BytesIO()
            return
        self.content.write(data)


def request_factory(max_body_size, authorization):
    """An IngestRequest class with these limits (twisted.web builds one per request)."""
    return type("IngestRequest", (IngestRequest,),
                {"max_body_size": max_body_size, "authorization": authorization})
