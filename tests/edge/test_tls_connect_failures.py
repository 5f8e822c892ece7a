"""The master's failed TLS handshakes and broken relays, counted and logged, on real
loopback sockets in the trial reactor with the listener's real context (Twisted's test
certificate): plain MQTT on the TLS port is ``not_tls`` and logged once per address
budget, a client that never starts TLS is a ``timeout`` at idle_timeout, a client that
refuses our certificate is ``certificate``, a TLS error after the handshake is a broken
relay (``tls``), and a client silent after its handshake or closing cleanly is none."""
import socket

from OpenSSL import SSL
from twisted.internet import defer, protocol, reactor, ssl
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connect, encode
from mqttd.edge.acceptor import RawAcceptor
from mqttd.edge.tls_connect import PendingTLSConnect
from mqttd.edge.tls_context import tls_options
from mqttd.edge.tls_failures import CERTIFICATE, NOT_TLS, RELAY_TLS, TIMEOUT, TLSFailures
from mqttd.metrics import Metrics
from tests.support.channels import WAIT, Recorder
from tests.support.logs import capture_logs
from tests.support.loopback import within
from tests.support.tls import PEM, ConnectLimits, Greeter

CONNECT = encode(Connect(client_id="tls-dev", keepalive=30))
LISTENER = "server.listen[1]"


class _OpenDoor:
    def admit(self, host, listener=None):
        pass

    def release(self, host, listener=None):
        pass


class _Distrustful:
    """A client's context that checks our self-signed certificate against no CA at all:
    OpenSSL refuses it in the handshake and sends the alert (unknown ca)."""

    def getContext(self):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_verify(SSL.VERIFY_PEER, lambda connection, cert, errno, depth, ok: ok)
        return context


class TLSFailureCountTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.context = tls_options(LISTENER, f"ssl:0:privateKey={PEM}")
        self.metrics = Metrics()
        # One line per address per minute: the second failure from 127.0.0.1 is held back.
        self.log_rate = LogRateLimit(Clock(), 1, 60.0, metrics=self.metrics)
        self.failures = TLSFailures(self.metrics, self.log_rate, LISTENER)
        self.events = capture_logs(self)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.connected = defer.Deferred()
        self.closed = []
        self.closed_events = []
        acceptor = RawAcceptor(reactor, listener, LISTENER, _OpenDoor(), self._admitted)
        acceptor.start()
        self.addCleanup(acceptor.stop)

    def _admitted(self, sock, host):
        PendingTLSConnect(reactor, self.context, sock, host, ConnectLimits(),
                          lambda p, c: self.connected.callback(p), self._closed,
                          failures=self.failures).start()

    def _closed(self, pending, reason):
        self.closed.append(reason)
        waiting, self.closed_events = self.closed_events, []
        for d in waiting:
            d.callback(reason)

    def next_close(self):
        d = defer.Deferred()
        self.closed_events.append(d)
        return within(d, WAIT)

    def client(self, greeting, tls=None):
        client = Greeter(greeting)
        factory = protocol.ClientFactory.forProtocol(lambda: client)
        if tls is None:
            connector = reactor.connectTCP("127.0.0.1", self.port, factory)
        else:
            connector = reactor.connectSSL("127.0.0.1", self.port, factory, tls)
        self.addCleanup(lambda: (connector.disconnect(), within(client.lost, WAIT))[1])
        return client

    def worker(self, pending):
        recorder = Recorder()
        reactor.adoptStreamConnection(pending.sock.fileno(), socket.AF_UNIX,
                                      protocol.Factory.forProtocol(lambda: recorder))
        pending.sock.close()
        return recorder

    def counted(self, name="edge_tls_handshake_failed"):
        return dict(getattr(self.metrics, name))

    def lines(self):
        return [e for e in self.events if e.get("log_format", "").startswith("TLS ")]

    @defer.inlineCallbacks
    def test_plain_mqtt_is_not_tls_counted_each_time_logged_once_per_address_budget(self):
        for _ in range(2):
            closing = self.next_close()
            client = self.client(CONNECT)
            yield closing
            yield within(client.lost, WAIT)
        self.assertEqual(self.counted(), {NOT_TLS: 2})
        (line,) = self.lines()
        self.assertEqual((line["peer"], line["listener"], line["reason"]),
                         ("127.0.0.1", LISTENER, NOT_TLS))
        self.assertIn("wrong version number", line["detail"])
        self.assertEqual(self.metrics.mqtt_log_lines_suppressed, 1)

    @defer.inlineCallbacks
    def test_a_client_that_never_starts_tls_is_a_timeout(self):
        closing = self.next_close()
        self.client(b"")
        self.assertEqual((yield closing), "no CONNECT in time")
        self.assertEqual(self.counted(), {TIMEOUT: 1})
        (line,) = self.lines()
        self.assertEqual(line["reason"], TIMEOUT)

    @defer.inlineCallbacks
    def test_a_client_silent_after_its_handshake_is_no_handshake_failure(self):
        closing = self.next_close()
        self.client(b"", tls=ssl.CertificateOptions())
        self.assertEqual((yield closing), "no CONNECT in time")
        self.assertEqual(self.counted(), {})
        self.assertEqual(self.lines(), [])

    @defer.inlineCallbacks
    def test_a_client_that_refuses_our_certificate_is_certificate(self):
        closing = self.next_close()
        self.client(CONNECT, tls=_Distrustful())
        yield closing
        self.assertEqual(self.counted(), {CERTIFICATE: 1})

    @defer.inlineCallbacks
    def test_a_tls_error_after_the_handshake_is_a_broken_relay(self):
        client = self.client(CONNECT, tls=ssl.CertificateOptions())
        pending = yield within(self.connected, WAIT)
        worker = self.worker(pending)
        # An application record that does not decrypt, under the client's TLS.
        client.transport.transport.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        yield within(worker.lost, WAIT)  # the relay closed the worker's side
        self.assertEqual(self.counted("edge_tls_relay_errors"), {RELAY_TLS: 1})
        self.assertEqual(self.counted(), {})
        (line,) = self.lines()
        self.assertEqual((line["peer"], line["side"]), ("127.0.0.1", "client"))

    @defer.inlineCallbacks
    def test_a_clean_close_is_no_error(self):
        client = self.client(CONNECT, tls=ssl.CertificateOptions())
        pending = yield within(self.connected, WAIT)
        worker = self.worker(pending)
        client.transport.loseConnection()
        yield within(worker.lost, WAIT)
        self.assertEqual((self.counted(), self.counted("edge_tls_relay_errors")), ({}, {}))
        self.assertEqual(self.lines(), [])
