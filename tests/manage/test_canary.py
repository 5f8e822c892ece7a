"""The canary on a Clock, against a scripted broker at the other end of a
StringTransport: a check passes with its PUBACK and its row, fails by what it waited
for (each kind), alerts once per episode, and keeps its connection between checks."""
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mqttd.codec import Connect, Parser, Publish, encode_connack, encode_puback
from mqttd.manage.canary import CANARY_CLIENT_ID, CANARY_TOPIC, CANARY_USERNAME, Canary
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs

INTERVAL = 10.0


class _Broker:
    """The far end of the canary's connections: what it sent, and answers on demand."""

    def __init__(self):
        self.connections = []  # (protocol, transport, the server side's parser)
        self.refuse = None  # an exception the next connect fails with

    def connect(self, factory):
        if self.refuse is not None:
            return fail(self.refuse)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport, Parser()))
        return succeed(protocol)

    def sent(self, index=-1):
        """The packets the canary wrote on connection ``index`` since the last look."""
        _, transport, parser = self.connections[index]
        data = transport.value()
        transport.clear()
        return parser.feed(data)

    def answer(self, data, index=-1):
        self.connections[index][0].dataReceived(data)


class _Rows:
    def __init__(self):
        self.asked = []
        self.answer = True

    def start(self):
        return succeed(None)

    def close(self):
        return succeed(None)

    def found(self, client_id, payload, since):
        self.asked.append((client_id, payload, since))
        if isinstance(self.answer, Deferred):
            return self.answer
        return succeed(self.answer)


class CanaryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(5000)
        self.broker = _Broker()
        self.rows = _Rows()
        self.metrics = Metrics()
        self.canary = Canary(self.clock, INTERVAL, lambda: self.broker, "secret", self.rows,
                             self.metrics)
        self.canary.startService()
        self.addCleanup(self.canary.stopService)
        self.events = capture_logs(self)

    def results(self):
        return dict(self.metrics.manage_canary_checks)

    def tick(self):
        self.clock.advance(INTERVAL)

    def connect_and_publish(self):
        """The next check: CONNECT answered, then its PUBLISH (returned)."""
        self.tick()
        packets = self.broker.sent()
        if packets and isinstance(packets[0], Connect):
            connect = packets[0]
            self.assertEqual((connect.client_id, connect.username, connect.password),
                             (CANARY_CLIENT_ID, CANARY_USERNAME, b"secret"))
            self.broker.answer(encode_connack(False, 0))
            packets = self.broker.sent()
        (publish,) = packets
        self.assertIsInstance(publish, Publish)
        self.assertEqual((publish.topic, publish.qos, publish.retain), (CANARY_TOPIC, 1, False))
        return publish

    def logged(self, level):
        return [event for event in self.events if event.get("log_level") is not None
                and event["log_level"].name == level and "canary" in event.get("log_format", "")]

    def test_a_check_passes_with_its_puback_and_its_row(self):
        self.assertEqual(self.canary.status()["state"], "waiting")
        publish = self.connect_and_publish()
        self.clock.advance(0.25)
        self.broker.answer(encode_puback(publish.packet_id))
        ((client_id, payload, since),) = self.rows.asked
        self.assertEqual((client_id, payload), (CANARY_CLIENT_ID, publish.payload))
        self.assertLessEqual(since, 5010.0)
        self.assertEqual(self.results(), {"ok": 1})
        status = self.canary.status()
        self.assertEqual((status["state"], status["last_result"], status["last_seconds"]),
                         ("ok", "ok", 0.25))
        self.assertEqual(self.metrics.manage_canary_seconds.count, 1)
        # The next check reuses the connection: no second CONNECT.
        second = self.connect_and_publish()
        self.assertNotEqual(second.payload, publish.payload)
        self.assertEqual(len(self.broker.connections), 1)

    def test_no_puback_within_an_interval_alerts_once_and_clears_when_one_passes(self):
        self.connect_and_publish()
        self.assertEqual(self.metrics.manage_canary_failing, 0)
        stalled_at = self.clock.seconds()
        self.connect_and_publish()  # the first check ends: no ack
        self.assertEqual(self.results(), {"no ack": 1})
        self.assertEqual(self.metrics.manage_canary_failing, 1)
        status = self.canary.status()
        self.assertEqual((status["state"], status["failing_since"]), ("failing", stalled_at))
        self.connect_and_publish()
        self.assertEqual(self.results(), {"no ack": 2})
        self.assertEqual(len(self.logged("error")), 1)  # once per episode
        publish = self.connect_and_publish()
        self.broker.answer(encode_puback(publish.packet_id))
        self.assertEqual(self.results(), {"no ack": 3, "ok": 1})
        self.assertEqual(self.metrics.manage_canary_failing, 0)
        self.assertEqual(len(self.logged("info")), 1)
        self.assertEqual(self.canary.status()["state"], "ok")

    def test_acknowledged_and_not_in_sqlite_is_not_stored(self):
        self.rows.answer = False
        publish = self.connect_and_publish()
        self.broker.answer(encode_puback(publish.packet_id))
        self.assertEqual(self.results(), {"not stored": 1})
        self.assertEqual(self.metrics.manage_canary_failing, 1)
        (error,) = self.logged("error")
        self.assertEqual(error["result"], "not stored")

    def test_a_lookup_that_fails_or_hangs_is_check_failed(self):
        self.rows.answer = Deferred()
        publish = self.connect_and_publish()
        self.broker.answer(encode_puback(publish.packet_id))
        self.tick()  # hung past its interval
        self.assertEqual(self.results(), {"check failed": 1})
        self.rows.answer.errback(RuntimeError("database is locked"))  # late: ignored
        self.assertEqual(self.results(), {"check failed": 1})

    def test_a_connack_refusal_is_refused_and_the_next_check_connects_again(self):
        self.tick()
        self.broker.sent()
        self.broker.answer(encode_connack(False, 5))
        self.assertEqual(self.results(), {"refused": 1})
        self.assertTrue(self.broker.connections[0][1].disconnecting)
        self.connect_and_publish()
        self.assertEqual(len(self.broker.connections), 2)

    def test_no_connection_is_unreachable(self):
        self.broker.refuse = ConnectionRefusedError()
        self.tick()
        self.assertEqual(self.results(), {"unreachable": 1})
        self.broker.refuse = None
        self.tick()  # connected, no CONNACK within the interval
        self.tick()
        self.assertEqual(self.results(), {"unreachable": 2})
        self.assertTrue(self.broker.connections[0][1].disconnecting)  # dropped

    def test_a_lost_connection_is_replaced_at_the_next_check(self):
        self.connect_and_publish()
        protocol = self.broker.connections[0][0]
        protocol.connectionLost(None)
        self.connect_and_publish()  # "no ack" for the first, a new connection for this
        self.assertEqual(len(self.broker.connections), 2)
        self.assertEqual(self.results(), {"no ack": 1})

    def test_without_a_row_store_the_puback_is_the_check(self):
        canary = Canary(self.clock, INTERVAL, lambda: self.broker, "secret", None,
                        self.metrics)
        canary.startService()
        self.addCleanup(canary.stopService)
        self.canary.stopService()
        publish = self.connect_and_publish()
        self.broker.answer(encode_puback(publish.packet_id))
        self.assertEqual(self.results(), {"ok": 1})
        self.assertFalse(canary.status()["row_check"])


class StartTests(unittest.TestCase):
    def test_the_checks_begin_once_the_appliance_first_says_it_is_up(self):
        clock, broker, metrics, up = Clock(), _Broker(), Metrics(), [False]
        canary = Canary(clock, INTERVAL, lambda: broker, "secret", None, metrics,
                        ready=lambda: up[0])
        canary.startService()
        self.addCleanup(canary.stopService)
        clock.advance(INTERVAL * 3)
        self.assertEqual((broker.connections, canary.status()["state"]), ([], "waiting"))
        up[0] = True
        clock.advance(INTERVAL)
        self.assertEqual(len(broker.connections), 1)
        up[0] = False  # /healthz 503 later (a stalled ingest): the checks go on
        clock.advance(INTERVAL)
        self.assertEqual(dict(metrics.manage_canary_checks), {"unreachable": 1})
