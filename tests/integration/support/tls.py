"""TLS against the real ``twistd mqttd``: a broker with an ``ssl:`` listener beside its
tcp one (Twisted's test certificate), TLS clients (paho, raw), and which worker a
connection reached, read from the workers' own log lines as the master relays them
(``[mqttd-worker-N] connect <client id> <peer> ...``): a relayed TLS connection is a
UNIX socket in the worker, so /proc's TCP table cannot tell."""
import os
import re
import ssl

import twisted.test

from tests.integration.support.common import DEFAULT_TIMEOUT, HOST, wait_for
from tests.integration.support.paho_client import PahoClient
from tests.integration.support.process import BrokerProcess
from tests.integration.support.raw_client import RawClient

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
TLS_LISTEN = f"ssl:0:interface={HOST}:privateKey={PEM}"

_TLS_LISTENING = re.compile(r"mqttd listening on ssl:0:\S* \([^)]*:(\d+)\)")
_CONNECT_LINE = re.compile(r"\[(mqttd-worker-\d+)\] connect (\S+) (\S+) ")


def client_context():
    """A client context that trusts the test certificate (by not checking it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class TLSBrokerProcess(BrokerProcess):
    """mqttd with its tcp listener and an ``ssl:`` one; ``tls_port`` once started."""

    tls_port = None

    def command(self, port):
        return [*super().command(port), "--listen", TLS_LISTEN]

    def start(self, *args, **kwargs):
        super().start(*args, **kwargs)
        match = wait_for(lambda: _TLS_LISTENING.search(self.output()),
                         message="the ssl: listener", context=self.tail)
        self.tls_port = int(match.group(1))
        return self


def start_tls_broker(testcase, config):
    broker = TLSBrokerProcess(config, workdir=os.path.abspath(testcase.mktemp()))
    testcase.addCleanup(broker.stop)
    broker.start()
    return broker


class TLSRawClient(RawClient):
    """RawClient over TLS (the handshake is done when it returns)."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT, source=None):
        super().__init__(port, timeout=timeout, source=source)
        self.sock = client_context().wrap_socket(self.sock)


def tls_paho(port, client_id, context=None, **kwargs):
    """A PahoClient that speaks TLS to ``port`` (not yet connected)."""
    client = PahoClient(port, client_id=client_id, context=context, **kwargs)
    client.client.tls_set_context(client_context())
    return client


def connected_on(output, client_id, peer):
    """The worker (``mqttd-worker-N``) that logged the connect of ``client_id`` from
    ``peer`` ((host, port)), or None if none has yet."""
    wanted = f"{peer[0]}:{peer[1]}"
    for worker, logged_id, logged_peer in _CONNECT_LINE.findall(output):
        if logged_id == client_id and logged_peer == wanted:
            return worker
    return None


def wait_connected_on(broker, client_id, peer, timeout=DEFAULT_TIMEOUT):
    """``connected_on``, waiting for the worker's line to reach the master's log."""
    return wait_for(lambda: connected_on(broker.output(), client_id, peer), timeout,
                    message=f"the connect line of {client_id!r} from {peer}",
                    context=broker.tail)
