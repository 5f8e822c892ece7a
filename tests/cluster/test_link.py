"""The link to Redis (mqttd.cluster.link) on a Clock and StringTransports: usable and
loud about it, calls that fail at once while down and within the timeout when Redis is
silent, reconnects with backoff, strings kept strings."""
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer
import txredisapi

from mqttd.cluster.link import RedisDown, RedisLink
from mqttd.cluster.scripts import Script
from mqttd.metrics import Metrics
from mqttd.urls import RedisAddress
from tests.support.logs import capture_logs


class _Transport(StringTransport):
    """Closing it ends its protocol's connection, as a real one does (once)."""

    def __init__(self, protocol):
        super().__init__()
        self._protocol = protocol

    def loseConnection(self):
        if not self.disconnecting:
            super().loseConnection()
            self._protocol.connectionLost(Failure(ConnectionLost()))

    abortConnection = loseConnection


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self):
        self.connections = []  # (protocol, transport)
        self.refuse = False

    def connect(self, factory):
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = _Transport(protocol)
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class LinkTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.endpoint = _Endpoint()
        self.events = capture_logs(self)
        self.ups = []

    def link(self, address=RedisAddress("127.0.0.1", 6379)):
        link = RedisLink(self.clock, address, self.metrics, 0.5, 2.0, 1.0, 8.0,
                         endpoint=self.endpoint)
        link.on_up(lambda: self.ups.append(self.clock.seconds()))
        link.start()
        self.addCleanup(link.stop)
        return link

    def lose(self, index=-1):
        self.endpoint.connections[index][1].loseConnection()

    def logged(self, text):
        return [e for e in self.events if text in e.get("log_format", "")]

    def test_connected_is_up_and_counted(self):
        link = self.link()
        self.assertTrue(link.up)
        self.assertEqual((self.metrics.cluster_redis_up, self.metrics.cluster_redis_connects),
                         (1, 1))
        self.assertEqual(self.ups, [0])
        self.assertTrue(self.logged("connected to Redis"))

    def test_a_call_is_sent_and_answered_with_strings_kept_strings(self):
        link = self.link()
        d = link.call("GET", "k")
        _, transport = self.endpoint.connections[0]
        self.assertEqual(transport.value(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        self.endpoint.connections[0][0].dataReceived(b"$3\r\n123\r\n")
        self.assertEqual(self.successResultOf(d), "123")

    def test_a_script_runs_by_its_sha_once_known(self):
        link = self.link()
        script = Script("t", "return 1")
        d = link.script(script, ["k"], [2])
        protocol, transport = self.endpoint.connections[0]
        self.assertIn(b"EVAL\r\n", transport.value())
        protocol.dataReceived(b":1\r\n")
        self.assertEqual(self.successResultOf(d), 1)
        transport.clear()
        again = link.script(script, ["k"], [2])
        self.assertIn(b"EVALSHA\r\n", transport.value())
        self.assertIn(script.sha.encode(), transport.value())
        protocol.dataReceived(b":1\r\n")
        self.assertEqual(self.successResultOf(again), 1)

    def test_down_calls_fail_at_once(self):
        link = self.link()
        self.lose()
        self.assertFalse(link.up)
        self.failureResultOf(link.call("PING"), RedisDown)
        self.assertEqual((self.metrics.cluster_redis_up, self.metrics.cluster_redis_lost),
                         (0, 1))
        self.assertTrue(self.logged("lost Redis at"))

    def test_a_silent_redis_fails_the_call_within_the_timeout_and_drops_it(self):
        link = self.link()
        d = link.call("PING")
        self.clock.advance(0.49)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.failureResultOf(d, txredisapi.TimeoutError)
        _, transport = self.endpoint.connections[0]
        self.assertTrue(transport.disconnecting)

    def test_reconnects_with_backoff_and_says_it_is_back(self):
        link = self.link()
        self.endpoint.refuse = True
        self.lose()
        self.clock.advance(30)  # refused attempts, backing off
        self.assertFalse(link.up)
        self.endpoint.refuse = False
        self.clock.advance(8.5)  # within the longest wait (reconnect_max, jitter)
        self.assertTrue(link.up)
        self.assertEqual(len(self.ups), 2)
        self.assertEqual(self.metrics.cluster_redis_connects, 2)
        self.assertTrue(self.logged("is back after"))

    def test_unreachable_at_start_is_said_once(self):
        self.endpoint.refuse = True
        link = self.link()
        self.clock.advance(60)
        self.assertFalse(link.up)
        self.assertEqual(len(self.logged("cannot reach Redis")), 1)
        self.assertEqual(self.metrics.cluster_redis_up, 0)

    def test_a_password_is_sent_first_and_a_refusal_keeps_it_down(self):
        link = self.link(RedisAddress("127.0.0.1", 6379, 0, None, "pw"))
        protocol, transport = self.endpoint.connections[0]
        self.assertEqual(transport.value(), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")
        self.assertFalse(link.up)
        protocol.dataReceived(b"-WRONGPASS invalid username-password pair\r\n")
        self.assertFalse(link.up)
        self.assertTrue(self.logged("refused this node"))
