"""Why a TLS handshake failed, as a stable key, from OpenSSL's real errors (a server
Connection on memory BIOs with the listener's real context and Twisted's test
certificate, driven by hand: no socket, no reactor), counted and logged once per
address budget; and the single process's HandshakeWatch on a Clock."""
import os

import twisted.test
from OpenSSL import SSL
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connect, encode
from mqttd.edge.tls_context import tls_options
from mqttd.edge.tls_failures import (
    CERTIFICATE, CLOSED, NOT_TLS, OTHER, PROTOCOL, RELAY_TLS, TIMEOUT, HandshakeWatch,
    TLSFailures, handshake_failure, relay_failure,
)
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
CONNECT = encode(Connect(client_id="plain-dev", keepalive=30))


def _server():
    context = tls_options("server.listen[1]", f"ssl:0:privateKey={PEM}").getContext()
    server = SSL.Connection(context, None)
    server.set_accept_state()
    return server


def _failure(call):
    try:
        call()
    except SSL.Error:
        return Failure()
    raise AssertionError("no OpenSSL error")


def _server_reads(data):
    """The server's Failure on reading ``data`` as a client's first bytes."""
    server = _server()
    server.bio_write(data)
    return _failure(server.do_handshake)


def _handshake(client_context):
    """The server's Failure of a handshake with a client on ``client_context``."""
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    server = _server()
    for _ in range(4):
        for this, peer in ((client, server), (server, client)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                if this is server:
                    return Failure()
            try:
                peer.bio_write(this.bio_read(65536))
            except SSL.WantReadError:
                pass
    raise AssertionError("the server saw no error")


class HandshakeFailureTests(unittest.TestCase):
    def test_plain_mqtt_on_the_tls_port_is_not_tls(self):
        reason, detail = handshake_failure(_server_reads(CONNECT))
        self.assertEqual(reason, NOT_TLS)
        self.assertIn("wrong version number", detail)

    def test_plain_http_on_the_tls_port_is_not_tls(self):
        self.assertEqual(handshake_failure(_server_reads(b"GET / HTTP/1.1\r\n\r\n"))[0],
                         NOT_TLS)

    def test_a_client_that_does_not_trust_our_certificate_is_certificate(self):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_verify(SSL.VERIFY_PEER, lambda *args: args[-1])  # no CA: refuses ours
        reason, detail = handshake_failure(_handshake(context))
        self.assertEqual(reason, CERTIFICATE)
        self.assertIn("unknown ca", detail)

    def test_a_client_with_no_cipher_in_common_is_protocol(self):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(b"ECDHE-ECDSA-AES128-GCM-SHA256")  # our key is RSA
        reason, detail = handshake_failure(_handshake(context))
        self.assertEqual(reason, PROTOCOL)
        self.assertIn("no shared cipher", detail)

    def test_a_malformed_handshake_message_is_protocol(self):
        self.assertEqual(handshake_failure(_server_reads(b"\x16\x03\x01\x00\x05hello"))[0],
                         PROTOCOL)

    def test_a_peer_that_closes_halfway_is_closed(self):
        for error in (ConnectionDone(), ConnectionLost()):
            self.assertEqual(handshake_failure(Failure(error))[0], CLOSED)

    def test_our_own_abort_is_for_the_caller_to_judge(self):
        self.assertIsNone(handshake_failure(Failure(ConnectionAborted())))

    def test_anything_else_is_other(self):
        self.assertEqual(handshake_failure(Failure(OSError(24, "Too many open files"))),
                         (OTHER, "[Errno 24] Too many open files"))


class RelayFailureTests(unittest.TestCase):
    def test_a_clean_close_a_peer_gone_or_our_abort_is_no_error(self):
        for error in (ConnectionDone(), ConnectionLost(), ConnectionAborted()):
            self.assertIsNone(relay_failure(Failure(error)))

    def test_a_tls_error_inside_the_connection_is_tls(self):
        reason, detail = relay_failure(_server_reads(CONNECT))
        self.assertEqual((reason, detail), (RELAY_TLS, "wrong version number"))

    def test_another_error_is_other(self):
        self.assertEqual(relay_failure(Failure(OSError("broken")))[0], OTHER)


class CountedAndLoggedTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.log_rate = LogRateLimit(self.clock, 1, 60.0, metrics=self.metrics)
        self.failures = TLSFailures(self.metrics, self.log_rate, "server.listen[1]")
        self.events = capture_logs(self)

    def lines(self):
        return [e for e in self.events if e.get("log_format", "").startswith("TLS ")]

    def test_each_failure_is_counted_and_logged_within_the_address_budget(self):
        self.failures.handshake_failed("192.0.2.7", NOT_TLS, "wrong version number")
        self.failures.handshake_failed("192.0.2.7", NOT_TLS, "wrong version number")
        self.failures.handshake_failed("192.0.2.8", TIMEOUT, "not done within 15 s")
        self.assertEqual(self.metrics.value("edge_tls_handshake_failed", reason=NOT_TLS), 2)
        self.assertEqual(self.metrics.value("edge_tls_handshake_failed", reason=TIMEOUT), 1)
        lines = self.lines()
        self.assertEqual([(e["peer"], e["listener"], e["reason"]) for e in lines],
                         [("192.0.2.7", "server.listen[1]", NOT_TLS),
                          ("192.0.2.8", "server.listen[1]", TIMEOUT)])
        self.assertEqual(lines[0]["detail"], "wrong version number")
        self.assertEqual(self.metrics.mqtt_log_lines_suppressed, 1)

    def test_a_broken_relay_is_counted_apart_and_logged_with_its_side(self):
        self.failures.relay_broken("192.0.2.7", "client", RELAY_TLS, "bad record mac")
        self.assertEqual(self.metrics.value("edge_tls_relay_errors", reason=RELAY_TLS), 1)
        self.assertEqual(self.metrics.edge_tls_handshake_failed, {})
        (line,) = self.lines()
        self.assertEqual((line["peer"], line["side"], line["reason"]),
                         ("192.0.2.7", "client", RELAY_TLS))

    def test_every_series_is_exported(self):
        self.failures.handshake_failed(None, CLOSED, "closed")
        names = {(name, tuple(labels.items()))
                 for name, _, _, labels, _ in self.metrics.samples()}
        self.assertIn(("edge_tls_handshake_failed", (("reason", CLOSED),)), names)


class HandshakeWatchTests(unittest.TestCase):
    """The single process: the broker's connect timeout aborts a handshake that never
    ends; the watch tells it from the other aborts by the time since the accept."""

    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        failures = TLSFailures(self.metrics, LogRateLimit(self.clock, 10, 60.0),
                               "server.listen[1]")
        self.watch = HandshakeWatch(self.clock, 15.0, failures)

    def counted(self):
        return dict(self.metrics.edge_tls_handshake_failed)

    def test_an_abort_at_idle_timeout_is_a_timeout(self):
        accepted = self.watch.accepted()
        self.clock.advance(15.0)
        self.watch.lost("192.0.2.7", accepted, Failure(ConnectionAborted()))
        self.assertEqual(self.counted(), {TIMEOUT: 1})

    def test_an_abort_a_tick_before_is_no_handshake_failure(self):
        accepted = self.watch.accepted()
        self.clock.advance(14.999)  # a refusal at the door's cap, a stop: not the client's
        self.watch.lost("192.0.2.7", accepted, Failure(ConnectionAborted()))
        self.assertEqual(self.counted(), {})

    def test_an_openssl_error_is_classified(self):
        self.watch.lost("192.0.2.7", self.watch.accepted(), _server_reads(CONNECT))
        self.assertEqual(self.counted(), {NOT_TLS: 1})
