"""The ingest resource's unit-test case: ``IngestResource`` over the real ``BatchWriter``
and a real SQLite file (``inline_store``: InlinePool, task.Clock), rendered with
``DummyRequest``. ``SECRET`` is its bearer secret and ``AUTH`` the header that carries
it. Shared by the resource, authentication and key-conflict tests.
"""
import json
from io import BytesIO

from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from mqttd.ingest.resource import IngestResource
from mqttd.ingest.writer import BatchWriter
from tests.support.store import HeldPoolQueries, inline_store

SECRET = "test-secret-0123456789"
AUTH = {b"Authorization": [b"Bearer " + SECRET.encode()]}


class ResourceTestCase(HeldPoolQueries, unittest.TestCase):
    def setUp(self):
        # busy_timeout=0: a commit meeting another writer's lock fails at once.
        self.store, self.clock, self.pool = inline_store(self, busy_timeout=0)
        self.writer = BatchWriter(self.clock, self.store, batch_size=100, flush_interval=5.0,
                                  max_queue=10)
        self.resource = IngestResource(self.writer, SECRET, max_body_size=4096)

    def post(self, data, method=b"POST", postpath=(), authorization=AUTH[b"Authorization"]):
        request = DummyRequest(list(postpath))
        request.method = method
        request.content = BytesIO(data)
        if authorization is not None:
            request.requestHeaders.setRawHeaders(b"authorization", authorization)
        request.requestHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
        result = self.resource.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()
        return request

    def answer(self, request):
        return json.loads(b"".join(request.written))
