"""The single process's failed TLS handshakes (``server.workers = 0``: Twisted's own TLS on
an ``ssl:`` port, the door's guard between it and the broker): plain MQTT on a real TLS
port is counted ``not_tls`` and logged, and in the service as built, the broker's
connect timeout ending a handshake is a ``timeout`` and a finished handshake is none."""
import os

import twisted.test
from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connect, encode
from mqttd.config import LimitsConfig, parse_config
from mqttd.edge.door import Door
from mqttd.edge.guard import DoorFactory, closes_at_accept, is_tls
from mqttd.edge.tls_failures import NOT_TLS, TIMEOUT, HandshakeWatch, TLSFailures
from mqttd.metrics import Metrics
from mqttd.service import build_service
from tests.support.logs import capture_logs
from tests.support.loopback import within
from tests.support.service import MemoryReactorOnInterfaces

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
LIMITS = LimitsConfig(max_conn_per_ip=0, max_conn_rate_per_ip=0.0, allowlist=(), banned=())


class _Inner(protocol.Protocol):
    """The broker's place: it only says when it is lost."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


class _Plain(protocol.Protocol):
    def __init__(self):
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(encode(Connect(client_id="plain-dev")))

    def connectionLost(self, reason):
        self.lost.callback(None)


def _tls_lines(events):
    return [e for e in events if e.get("log_format", "").startswith("TLS handshake")]


class RealPortTests(unittest.TestCase):
    timeout = 20

    async def test_plain_mqtt_on_a_tls_port_is_counted_not_tls_and_logged(self):
        events = capture_logs(self)
        metrics = Metrics()
        log_rate = LogRateLimit(reactor, 10, 60.0, metrics=metrics)
        door = Door(reactor, LIMITS, 10, metrics, log_rate)
        endpoint = serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={PEM}")
        self.assertTrue(is_tls(endpoint))
        inner = _Inner()
        failures = TLSFailures(metrics, log_rate, "server.listen[1]")
        factory = DoorFactory(door, protocol.Factory.forProtocol(lambda: inner),
                              closes_at_accept(endpoint), HandshakeWatch(reactor, 15.0, failures))
        port = await endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        client = _Plain()
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port,
                                       protocol.ClientFactory.forProtocol(lambda: client))
        self.addCleanup(connector.disconnect)
        await within(inner.lost, 5)
        self.assertEqual(dict(metrics.edge_tls_handshake_failed), {NOT_TLS: 1})
        (line,) = _tls_lines(events)
        self.assertEqual((line["peer"], line["listener"]), ("127.0.0.1", "server.listen[1]"))
        await within(client.lost, 5)


def _peer():
    return IPv4Address("TCP", "192.0.2.7", 40000)


class ServiceWiringTests(unittest.TestCase):
    """build_service on a memory reactor: its ssl: port's factory, driven by hand."""

    def setUp(self):
        self.reactor = MemoryReactorOnInterfaces()
        config = parse_config({
            "server": {"data_dir": self.mktemp(), "listen": [
                "tcp:1883:interface=127.0.0.1", f"ssl:8883:privateKey={PEM}"]},
            "broker": {"idle_timeout": 5.0}})
        self.root = build_service(config, self.reactor)
        self.root.privilegedStartService()
        self.addCleanup(self.root.stopService)
        ((_, self.factory, _, _, _),) = self.reactor.sslServers
        self.events = capture_logs(self)

    def connection(self):
        protocol = self.factory.buildProtocol(_peer())
        self.transport = StringTransport(peerAddress=_peer())
        protocol.makeConnection(self.transport)
        return protocol

    def counted(self):
        return dict(self.root.metrics.edge_tls_handshake_failed)

    def test_the_brokers_connect_timeout_in_the_handshake_is_a_timeout(self):
        protocol = self.connection()
        self.reactor.advance(5.0)  # the broker's connect timeout: it aborts
        self.assertTrue(self.transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionAborted()))  # as TLS then reports it
        self.assertEqual(self.counted(), {TIMEOUT: 1})
        (line,) = _tls_lines(self.events)
        self.assertEqual((line["peer"], line["listener"]), ("192.0.2.7", "server.listen[1]"))

    def test_a_connection_whose_handshake_ended_is_no_handshake_failure(self):
        protocol = self.connection()
        protocol.handshakeCompleted()
        self.reactor.advance(5.0)
        protocol.connectionLost(Failure(ConnectionAborted()))
        protocol = self.connection()
        protocol.handshakeCompleted()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.counted(), {})
