"""A stalled webhook upload cannot pin memory (issue 11, point 6, third bullet).

Real loopback sockets and a real tier (writer, SQLite); only the requests' deadlines
run on a task.Clock, so the test decides when ``request_timeout`` has passed. An upload
that stops halfway through its body is closed at its deadline and what it had sent is
freed; the bytes of bodies being received are bounded across requests.
"""
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from mqttd.ingest.resource import build_ingest_site
from mqttd.ingest.wire import encode_batch
from mqttd.ingest.writer import BatchWriter
from mqttd.store.sqlite import SqliteStore
from tests.support.loopback import until, within
from tests.support.ingest import AUTH, SECRET
from tests.support.store import make_dir, message


class _Uploader(Protocol):
    """Sends a request's headers and part of its body, then nothing more."""

    def __init__(self, head, part):
        self._data = head + part
        self.answer = b""
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self._data)

    def dataReceived(self, data):
        self.answer += data

    def connectionLost(self, reason):
        self.closed.callback(self.answer)


def head(length):
    return (b"POST /v1/messages HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + SECRET.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


class StalledUploadTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.store = SqliteStore.in_data_dir(reactor, make_dir(self))
        yield self.store.start()
        self.addCleanup(self.store.close)
        self.writer = BatchWriter(reactor, self.store, flush_interval=0.0)
        self.addCleanup(self.writer.close)
        self.deadlines = Clock()
        self.site = build_ingest_site(self.deadlines, self.writer, SECRET,
                                      max_body_size=1_000_000, request_timeout=5.0,
                                      max_receiving_bytes=150_000)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/v1/messages"

    def stall(self, length, sent):
        uploader = _Uploader(head(length), b"x" * sent)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        self.addCleanup(lambda: uploader.transport and uploader.transport.abortConnection())
        return connectProtocol(endpoint, uploader)

    @defer.inlineCallbacks
    def test_a_stalled_upload_is_closed_at_its_deadline_and_freed(self):
        uploader = yield self.stall(900_000, 100_000)
        budget = self.site.budget
        self.assertTrue((yield until(lambda: budget.used == 100_000, 5)), budget.used)
        self.deadlines.advance(4.9)
        self.assertFalse(uploader.closed.called)
        self.deadlines.advance(0.1)
        answer = yield within(uploader.closed, 5)
        self.assertEqual(answer, b"")  # closed, not answered
        self.assertEqual((budget.used, budget.timed_out), (0, 1))
        self.assertEqual((yield self.store.count()), 0)

    @defer.inlineCallbacks
    def test_bodies_being_received_are_bounded_across_requests(self):
        stalled = yield self.stall(900_000, 100_000)
        budget = self.site.budget
        self.assertTrue((yield until(lambda: budget.used == 100_000, 5)), budget.used)
        batch = encode_batch([message("big", payload=b"p" * 45_000)])
        self.assertGreater(len(batch), 50_000)  # 100 kB + this > max_receiving_bytes
        response = yield self.http.post(self.url, data=batch, headers=AUTH)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"1"])
        self.assertIn(b"max_receiving_bytes 150000", (yield response.content()))
        self.assertEqual((budget.used, budget.refused), (100_000, 1))
        self.deadlines.advance(5.0)
        yield within(stalled.closed, 5)
        response = yield self.http.post(self.url, data=batch, headers=AUTH)
        self.assertEqual(response.code, 200)
        yield response.content()
        self.assertEqual((budget.used, (yield self.store.count())), (0, 1))
