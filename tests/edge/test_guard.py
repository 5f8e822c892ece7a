"""The door in front of a Twisted listener (one process): a refused socket is closed at
accept without a protocol of its own, an admitted one is released exactly once when it
closes; over TLS too, on real loopback sockets."""
import os
from socket import AF_INET

import attrs
import twisted.test
from twisted.internet import defer, reactor, ssl
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.config import LimitsConfig, parse_config
from mqttd.edge.door import Door
from mqttd.edge.guard import DoorFactory, closes_at_accept
from mqttd.metrics import Metrics
from mqttd.service import build_service
from tests.support.loopback import within
from tests.support.service import MemoryReactorOnInterfaces

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
LIMITS = LimitsConfig(max_conn_per_ip=1, max_conn_rate_per_ip=0.0, allowlist=(), banned=())


class _Recorder(Protocol):
    def __init__(self):
        self.data = []
        self.lost = []

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.lost.append(reason)


class _Factory(ServerFactory):
    """Counts the protocols it built (a refused socket must cost none)."""

    def __init__(self, refuse=False):
        self.built = []
        self.refuse = refuse

    def buildProtocol(self, addr):
        if self.refuse:
            return None
        protocol = _Recorder()
        self.built.append(protocol)
        return protocol


def _door(clock, limits=LIMITS, max_connections=10):
    metrics = Metrics()
    return Door(clock, limits, max_connections, metrics, LogRateLimit(clock, 10, 60.0,
                                                                      metrics=metrics))


def _peer(host="10.0.0.1"):
    return IPv4Address("TCP", host, 40000)


class DoorFactoryTests(unittest.TestCase):
    def setUp(self):
        self.door = _door(Clock())
        self.inner = _Factory()
        self.factory = DoorFactory(self.door, self.inner)

    def test_a_refused_peer_gets_no_protocol_so_the_port_closes_it(self):
        self.assertIsNotNone(self.factory.buildProtocol(_peer()))
        self.assertIsNone(self.factory.buildProtocol(_peer()))
        self.assertEqual(len(self.inner.built), 1)  # nothing made for the refused one

    def test_a_refusal_is_told_with_its_peer(self):
        heard = []
        factory = DoorFactory(self.door, self.inner, on_refused=lambda addr, refusal: heard.append(
            (addr.host, refusal.limit)))
        factory.buildProtocol(_peer())
        self.assertIsNone(factory.buildProtocol(_peer()))
        self.assertEqual(heard, [("10.0.0.1", "limits.max_conn_per_ip")])

    def test_the_real_protocol_gets_the_real_transport_and_every_read(self):
        outer = self.factory.buildProtocol(_peer())
        transport = StringTransport()
        outer.makeConnection(transport)
        (inner,) = self.inner.built
        self.assertIs(inner.transport, transport)
        outer.dataReceived(b"\x10")
        outer.dataReceived(b"\x00")
        self.assertEqual(inner.data, [b"\x10", b"\x00"])
        self.assertEqual(outer.logPrefix(), "_Recorder")

    def test_released_once_when_the_connection_closes(self):
        outer = self.factory.buildProtocol(_peer())
        outer.makeConnection(StringTransport())
        self.assertEqual(self.door.open_from("10.0.0.1"), 1)
        reason = Failure(RuntimeError("gone"))
        outer.connectionLost(reason)
        outer.connectionLost(reason)  # a second call must not release again
        (inner,) = self.inner.built
        self.assertEqual(inner.lost, [reason, reason])
        self.assertEqual((self.door.open, self.door.open_from("10.0.0.1")), (0, 0))
        self.assertIsNotNone(self.factory.buildProtocol(_peer()))  # its slot is free

    def test_released_when_the_real_factory_builds_nothing(self):
        factory = DoorFactory(self.door, _Factory(refuse=True))
        self.assertIsNone(factory.buildProtocol(_peer()))
        self.assertEqual(self.door.open, 0)

    def test_a_unix_socket_peer_meets_the_global_cap(self):
        door = _door(Clock(), max_connections=1)
        factory = DoorFactory(door, self.inner)
        outer = factory.buildProtocol(UNIXAddress(None))
        self.assertIsNotNone(outer)
        self.assertIsNone(factory.buildProtocol(UNIXAddress(None)))
        outer.makeConnection(StringTransport())
        outer.connectionLost(Failure(RuntimeError("gone")))
        self.assertEqual(door.open, 0)

    def test_behind_a_wrapping_factory_a_refused_socket_is_aborted_at_once(self):
        factory = DoorFactory(self.door, self.inner, close_at_accept=False)
        factory.buildProtocol(_peer())
        refused = factory.buildProtocol(_peer())
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.inner.built), 1)

    def test_which_endpoints_call_the_factory_themselves(self):
        sock = os.path.abspath(self.mktemp())
        for description, expected in [("tcp:0", True), ("tcp6:0", True), (f"unix:{sock}", True),
                                      (f"ssl:0:privateKey={PEM}", False)]:
            endpoint = serverFromString(reactor, description)
            self.assertEqual(closes_at_accept(endpoint), expected, description)
        # What systemd:domain=INET:index=0 makes from a socket systemd passed:
        self.assertTrue(closes_at_accept(AdoptedStreamServerEndpoint(reactor, 3, AF_INET)))


class _Client(Protocol):
    def __init__(self):
        self.lost = defer.Deferred()
        self.received = b""

    def connectionMade(self):
        self.transport.write(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class RealListenerTests(unittest.TestCase):
    """What a StringTransport cannot show: the ports' own handling of a None, and TLS."""

    timeout = 20

    async def listen(self, description, banned):
        limits = attrs.evolve(LIMITS, banned=banned)
        self.door = _door(reactor, limits)
        self.inner = _Factory()
        endpoint = serverFromString(reactor, description)
        port = await endpoint.listen(DoorFactory(self.door, self.inner,
                                                 closes_at_accept(endpoint)))
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def connect(self, port, tls=False):
        client = _Client()
        factory = ClientFactory.forProtocol(lambda: client)
        if tls:
            connector = reactor.connectSSL("127.0.0.1", port, factory, ssl.CertificateOptions())
        else:
            connector = reactor.connectTCP("127.0.0.1", port, factory)
        self.addCleanup(connector.disconnect)
        return client

    async def test_a_refused_tcp_socket_is_closed_and_builds_nothing(self):
        port = await self.listen("tcp:0:interface=127.0.0.1", ("127.0.0.1",))
        client = await self.connect(port)
        await within(client.lost, 5)
        self.assertEqual((self.inner.built, client.received), ([], b""))
        self.assertEqual(self.door.open, 0)

    async def test_a_refused_tls_socket_is_closed_and_builds_nothing(self):
        port = await self.listen(f"ssl:0:interface=127.0.0.1:privateKey={PEM}", ("127.0.0.1",))
        client = await self.connect(port, tls=True)
        await within(client.lost, 5)
        self.assertEqual((self.inner.built, client.received), ([], b""))

    async def test_an_admitted_tls_socket_reads_and_is_released_when_it_closes(self):
        port = await self.listen(f"ssl:0:interface=127.0.0.1:privateKey={PEM}", ())
        client = await self.connect(port, tls=True)
        for _ in range(100):
            if self.inner.built and self.inner.built[0].data:
                break
            await _turn()
        (inner,) = self.inner.built
        self.assertEqual(b"".join(inner.data)[:1], b"\x10")
        self.assertEqual(self.door.open_from("127.0.0.1"), 1)
        client.transport.loseConnection()
        await within(client.lost, 5)
        for _ in range(100):
            if not self.door.open:
                break
            await _turn()
        self.assertEqual(self.door.open, 0)


def _turn():
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class ServiceWiringTests(unittest.TestCase):
    def test_every_mqtt_listener_is_behind_one_door(self):
        sock = os.path.abspath(self.mktemp())
        reactor = MemoryReactorOnInterfaces()
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp(), "listen": [
            "tcp:1883:interface=127.0.0.1", f"ssl:8883:privateKey={PEM}", f"unix:{sock}"]},
            "limits": {"banned": ["10.0.0.0/8"]}})
        root = build_service(config, reactor)
        root.privilegedStartService()
        self.addCleanup(root.stopService)
        mqtt = [factory for port, factory, _, interface in reactor.tcpServers if port == 1883]
        mqtt += [factory for _, factory, _, _, _ in reactor.sslServers]
        mqtt += [factory for _, factory, _, _, _ in reactor.unixServers]
        self.assertEqual(len(mqtt), 3)
        tcp, tls, unix = mqtt
        for factory in mqtt:
            self.assertIsInstance(factory, DoorFactory)
            self.assertIs(factory.door, root.door)
        self.assertIsNone(tcp.buildProtocol(_peer()))  # banned: closed by the port
        self.assertIsNone(unix.buildProtocol(_peer()))
        transport = StringTransport()
        tls.buildProtocol(_peer()).makeConnection(transport)  # under TLS: aborted
        self.assertTrue(transport.disconnecting)
        self.assertEqual(root.metrics.value("edge_refused", limit="limits.banned"), 3)
        self.assertIsNotNone(tcp.buildProtocol(_peer("192.0.2.1")))
        self.assertEqual(root.door.open, 1)
