"""Closing over TLS, on real loopback sockets: the bug only a real TLS transport shows.

A connection mqttd closes while its reads are paused (a full max_inflight window) used
to stay open forever over TLS: loseConnection sends close_notify and waits for the
client's, which a paused transport never reads. connectionLost never ran, so the socket
and the max_connections slot leaked. (tests/broker/test_after_close.py's
ClosingWhilePausedTests pin the mechanism on StringTransport.)
"""
import os

import attrs
import twisted.test
from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.codec import Connect, encode
from mqttd.config import AuthConfig, BrokerConfig
from tests.support.broker import ManualStore, pub
from tests.support.loopback import when_called, within

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


class _Device(Protocol):
    def __init__(self, data):
        self.data = data
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def connectionLost(self, reason):
        self.lost.callback(None)


class TLSCloseWhilePausedTests(unittest.TestCase):
    timeout = 20

    async def close_after_store_failure(self, max_inflight):
        store = ManualStore()
        stored = when_called(store, "store")
        config = attrs.evolve(BrokerConfig(), max_inflight=max_inflight)
        broker = Broker(reactor, config, store, StaticAuthenticator(AuthConfig(allow_anonymous=True)))
        released = when_called(broker, "connection_closed")
        port = await serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={PEM}").listen(
                MQTTServerFactory(broker, reactor))
        self.addCleanup(port.stopListening)
        device = _Device(encode(Connect("dev")) + encode(pub("t", qos=1, pid=1)))
        factory = ClientFactory.forProtocol(lambda: device)
        connector = reactor.connectSSL("127.0.0.1", port.getHost().port, factory,
                                       ssl.CertificateOptions())
        self.addCleanup(connector.disconnect)
        await within(stored, 5)
        store.fail(0)  # mqttd closes the connection, unacknowledged
        self.flushLoggedErrors(RuntimeError)
        await within(released, 5)  # (a TimeoutError: the connection was never released)
        self.assertEqual(broker.metrics.mqtt_connections_open, 0)
        await within(device.lost, 5)
        self.flushLoggedErrors(RuntimeError)

    async def test_closed_with_reading_paused(self):
        await self.close_after_store_failure(max_inflight=1)  # the PUBLISH fills the window

    async def test_closed_while_reading(self):
        await self.close_after_store_failure(max_inflight=32)
