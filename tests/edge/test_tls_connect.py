"""A TLS client in the master, on real loopback sockets in the trial reactor (only a real
TLS transport shows the handshake, close_notify and its flow control): the CONNECT is
read inside TLS, the worker's end of the socketpair carries the plaintext both ways,
each side's close closes the other, a silent or non-TLS client is closed within
idle_timeout counted from the accept, and a stalled worker stops the reads from the
client until it reads again."""
import os
import socket
import time

from twisted.internet import defer, protocol, reactor, ssl
from twisted.trial import unittest

from mqttd.codec import Connect, Publish, encode
from mqttd.edge.acceptor import RawAcceptor
from mqttd.edge.tls_connect import PendingTLSConnect
from mqttd.edge.tls_context import tls_options
from tests.support.channels import WAIT, Recorder
from tests.support.loopback import until, within
from tests.support.tls import PEM, Greeter as _Greeter, ConnectLimits as Limits

CONNECT = encode(Connect(client_id="tls-dev", keepalive=30))
PUBLISH = encode(Publish(topic="t", payload=b"p" * 20, qos=0))


class _OpenDoor:
    """Admits everyone: the door is not what these tests are about."""

    def __init__(self):
        self.open = 0

    def admit(self, host, listener=None):
        self.open += 1

    def release(self, host, listener=None):
        self.open -= 1


class TLSConnectTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.context = tls_options("server.listen[0]", f"ssl:0:privateKey={PEM}")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.connected = defer.Deferred()
        self.closed = defer.Deferred()
        self.pendings = []
        acceptor = RawAcceptor(reactor, listener, "server.listen[0]", _OpenDoor(),
                               self._admitted)
        acceptor.start()
        self.addCleanup(acceptor.stop)
        self.accepted_at = None

    def _admitted(self, sock, host):
        self.accepted_at = time.monotonic()
        pending = PendingTLSConnect(reactor, self.context, sock, host, Limits(),
                                    lambda p, c: self.connected.callback((p, c)),
                                    lambda p, reason: self.closed.callback(reason))
        self.pendings.append(pending)
        pending.start()

    def tls_client(self, greeting):
        client = _Greeter(greeting)
        connector = reactor.connectSSL("127.0.0.1", self.port,
                                       protocol.ClientFactory.forProtocol(lambda: client),
                                       ssl.CertificateOptions())
        self.addCleanup(self._stop, client, connector)
        return client

    def tcp_client(self, greeting):
        """A client that speaks no TLS."""
        client = _Greeter(greeting)
        connector = reactor.connectTCP("127.0.0.1", self.port,
                                       protocol.ClientFactory.forProtocol(lambda: client))
        self.addCleanup(self._stop, client, connector)
        return client

    def _stop(self, client, connector):
        connector.disconnect()
        return within(client.lost, WAIT)

    def worker(self, pending):
        """The worker's end of the socketpair, read by a Recorder as a worker would."""
        recorder = Recorder()
        reactor.adoptStreamConnection(pending.sock.fileno(), socket.AF_UNIX,
                                      protocol.Factory.forProtocol(lambda: recorder))
        pending.sock.close()  # the master's copy, closed as after a hand-off

        def stop():
            if not recorder.lost.called:
                recorder.transport.abortConnection()
            return within(recorder.lost, WAIT)
        self.addCleanup(stop)
        return recorder

    @defer.inlineCallbacks
    def test_the_connect_inside_tls_then_plaintext_both_ways(self):
        client = self.tls_client(CONNECT + PUBLISH)
        pending, connect = yield within(self.connected, WAIT)
        self.assertEqual(connect.client_id, "tls-dev")
        self.assertTrue(pending.preread.startswith(CONNECT))
        local = client.transport.getHost()
        self.assertEqual(pending.peer, (local.host, local.port))  # the client's own address
        worker = self.worker(pending)
        client.transport.write(b"|after")
        rest = (CONNECT + PUBLISH + b"|after")[len(pending.preread):]
        self.assertEqual((yield worker.received(len(rest))), rest)
        worker.transport.write(b"\x20\x02\x00\x00")
        self.assertEqual((yield client.received(4)), b"\x20\x02\x00\x00")
        worker.transport.loseConnection()  # the worker closes: so does the TLS client
        yield within(client.lost, WAIT)

    @defer.inlineCallbacks
    def test_the_client_closing_closes_the_worker_side(self):
        client = self.tls_client(CONNECT)
        pending, _ = yield within(self.connected, WAIT)
        worker = self.worker(pending)
        client.transport.loseConnection()
        yield within(worker.lost, WAIT)

    @defer.inlineCallbacks
    def test_a_worker_that_does_not_read_stops_the_reads_from_the_client(self):
        client = self.tls_client(CONNECT)
        pending, _ = yield within(self.connected, WAIT)
        tcp = pending.transport.transport  # the master's TCP transport under TLS
        payload = os.urandom(8 * 1024 * 1024)  # far over every buffer on the way
        client.transport.write(payload)
        paused = yield defer.ensureDeferred(until(lambda: tcp not in reactor.getReaders(), WAIT))
        self.assertTrue(paused, "the master kept reading a client its worker does not read")
        worker = self.worker(pending)  # now it reads: everything arrives, in order
        received = yield worker.received(len(pending.preread) - len(CONNECT) + len(payload))
        self.assertEqual(pending.preread[len(CONNECT):] + received, payload)

    @defer.inlineCallbacks
    def test_a_refused_protocol_level_gets_its_connack_inside_tls(self):
        client = self.tls_client(encode(Connect(client_id="x", protocol_level=5)))
        reason = yield within(self.closed, WAIT)
        self.assertIn("protocol error", reason)
        self.assertEqual((yield client.received(4)), b"\x20\x02\x00\x01")
        yield within(client.lost, WAIT)

    @defer.inlineCallbacks
    def test_a_client_silent_after_the_handshake_is_closed_at_idle_timeout(self):
        client = self.tls_client(b"")
        reason = yield within(self.closed, WAIT)
        self.assertEqual(reason, "no CONNECT in time")
        self.assertGreaterEqual(time.monotonic() - self.accepted_at, Limits().idle_timeout * 0.9)
        yield within(client.lost, WAIT)

    @defer.inlineCallbacks
    def test_a_client_that_never_starts_tls_is_closed_at_idle_timeout(self):
        client = self.tcp_client(b"")
        reason = yield within(self.closed, WAIT)
        self.assertEqual(reason, "no CONNECT in time")
        yield within(client.lost, WAIT)

    @defer.inlineCallbacks
    def test_plaintext_mqtt_on_a_tls_listener_is_closed(self):
        client = self.tcp_client(CONNECT)
        reason = yield within(self.closed, WAIT)
        self.assertIn("lost before CONNECT", reason)
        self.assertFalse(self.connected.called)
        yield within(client.lost, WAIT)
