"""A failed TLS handshake against the real ``twistd mqttd``: a device that speaks plain
MQTT to the ``ssl:`` listener gets no CONNACK (nothing: the close), and the
failure is counted and logged as ``not_tls`` with its address and the listener's key:
in the process tree (``server.workers = 2``, the master terminates TLS) and in the
single process (Twisted's own TLS). The log line is the counter's witness here; the
metrics are not exported yet. A TLS client still connects afterwards."""
import re
import socket

from tests.integration.support.common import DEFAULT_TIMEOUT, HOST, wait_for
from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tls import TLSRawClient, start_tls_broker

# CONNECT, MQTT 3.1.1, client id "plain-dev", clean session, keepalive 60.
PLAIN_CONNECT = b"\x10\x15\x00\x04MQTT\x04\x02\x00\x3c\x00\x09plain-dev"
# The ssl: listener is the second: server.listen[1] (the harness's tcp one is first).
_FAILED = re.compile(r"TLS handshake failed from 127\.0\.0\.1 on server\.listen\[1\]: "
                     r"not_tls \([^)]*wrong version number")

SINGLE = """
[auth]
allow_anonymous = true
"""
TREE = SINGLE + """
[server]
workers = 2
"""


def plain_connect_to(port):
    """What a plain MQTT CONNECT to ``port`` gets back before the broker closes it."""
    with socket.create_connection((HOST, port), timeout=DEFAULT_TIMEOUT) as sock:
        sock.sendall(PLAIN_CONNECT)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data


@requires_mqttd("TLS")
class PlainOnTLSSingleProcessTests(BrokerTestCase):
    config = SINGLE

    def setUp(self):
        self.broker = start_tls_broker(self, self.config)
        self.port, self.tls_port = self.broker.port, self.broker.tls_port
        self._ids = 0

    def test_plain_mqtt_on_the_tls_listener_is_refused_counted_and_logged(self):
        received = plain_connect_to(self.tls_port)
        self.assertEqual(received, b"")  # no CONNACK, nothing: OpenSSL sends no alert
        wait_for(lambda: _FAILED.search(self.broker.output()),
                 message="the not_tls line", context=self.context)
        raw = TLSRawClient(self.tls_port)
        self.addCleanup(raw.close)
        self.assertEqual(raw.connect(client_id="tls-after")[0], 0)


class PlainOnTLSTreeTests(PlainOnTLSSingleProcessTests):
    config = TREE
