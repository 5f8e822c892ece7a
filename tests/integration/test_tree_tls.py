"""TLS in the real process tree (``server.workers = 2``, an ``ssl:`` listener): the master
terminates TLS, reads the CONNECT inside it and hands the worker a socketpair whose
plaintext it relays, so a TLS client sticks to its worker by client id exactly as a
plain TCP one: paho over TLS publishes QoS 1 into SQLite, the same client id lands on
the same worker every time (the worker logs the client's real address, not the UNIX
socket's), a TLS and a TCP client with one id meet on one worker where the second
takes the first over, the door counts a TLS connection until it closes, and a bad
certificate path stops start-up with one line naming the key."""
import os

from tests.integration.support.common import HOST, wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.process import requires_mqttd, run_twistd_mqttd
from tests.integration.support.raw_client import ConnectionClosed, RawClient
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tls import (
    TLSRawClient, start_tls_broker, tls_paho, wait_connected_on,
)
from tests.integration.support.tree import owner, wait_for_children

WORKERS = ("mqttd-worker-1", "mqttd-worker-2")
# Every connect line is logged: the tests read which worker a connection reached from it.
TREE = """
[auth]
allow_anonymous = true
[server]
workers = 2
[broker]
log_lines_per_ip = 1000000
"""


@requires_mqttd("the process tree")
class TreeTLSCase(BrokerTestCase):
    config = TREE

    def setUp(self):
        self.broker = start_tls_broker(self, self.config)
        self.port, self.tls_port = self.broker.port, self.broker.tls_port
        self._ids = 0
        self.procs = wait_for_children(self.broker.process.pid, WORKERS + ("mqttd-ingest",))

    def tls_raw(self, source=None, timeout=5.0):
        raw = TLSRawClient(self.tls_port, source=source, timeout=timeout)
        self.addCleanup(raw.close)
        return raw

    def tls_client(self, client_id, **kwargs):
        client = tls_paho(self.tls_port, client_id, context=self.context, **kwargs)
        self.addCleanup(client.close)
        client.connect()
        return client


class TLSPublishTests(TreeTLSCase):
    def test_paho_over_tls_publishes_qos1_into_sqlite(self):
        client = self.tls_client("tls-pub")
        for i in range(20):
            client.publish("tls/t", f"m{i}".encode(), qos=1)  # waits for its PUBACK
        rows = stored_messages(self.broker.db_path)
        self.assertEqual(sorted(r[1] for r in rows), sorted(f"m{i}".encode() for i in range(20)))
        # The worker logged the client's own address and port.
        self.assertIsNotNone(wait_connected_on(self.broker, "tls-pub",
                                               client.client.socket().getsockname()))


class TLSStickyTests(TreeTLSCase):
    def test_each_client_id_over_tls_lands_on_the_same_worker_every_time(self):
        where = {}
        for round_ in range(10):
            for n in range(8):
                client_id = f"tls-sticky-{n}"
                source = f"127.0.0.{2 + n}"
                raw = self.tls_raw(source=source)
                self.assertEqual(raw.connect(client_id=client_id)[0], 0)
                peer = raw.sock.getsockname()
                self.assertEqual(peer[0], source)
                worker = wait_connected_on(self.broker, client_id, peer)
                self.assertEqual(where.setdefault(client_id, worker), worker,
                                 f"{client_id} moved in round {round_}")
                raw.close()
        self.assertEqual(set(where.values()), set(WORKERS), "both workers should hold clients")

    def test_tls_and_tcp_clients_of_one_id_meet_on_one_worker_and_the_second_takes_over(self):
        met = set()
        for n in range(4):  # ids homed on both workers (checked below)
            client_id = f"tls-and-tcp-{n}"
            tls = self.tls_client(client_id)
            worker = wait_connected_on(self.broker, client_id, tls.client.socket().getsockname())
            tcp = self.raw()
            self.assertEqual(tcp.connect(client_id=client_id)[0], 0)
            self.assertEqual(owner(tcp.sock, [self.procs[name] for name in WORKERS]),
                             self.procs[worker])
            tls.wait_disconnected()  # taken over by the TCP client, on the same worker
            again = self.tls_raw()
            self.assertEqual(again.connect(client_id=client_id)[0], 0)
            self.assertEqual(wait_connected_on(self.broker, client_id, again.sock.getsockname()),
                             worker)
            tcp.wait_closed()  # and the TLS client takes the TCP one over
            met.add(worker)
        self.assertEqual(met, set(WORKERS))


class TLSDoorTests(TreeTLSCase):
    config = TREE + "[limits]\nallowlist = []\nmax_conn_per_ip = 2\nmax_conn_rate_per_ip = 0\n"

    def refused(self, source):
        """Whether a TLS connection from ``source`` is closed before its CONNACK."""
        try:
            raw = self.tls_raw(source=source, timeout=3)
            raw.connect(client_id=self.new_id(source), timeout=3)
        except (ConnectionClosed, OSError):  # reset at accept: the handshake fails
            return True
        return False

    def test_a_tls_connection_counts_at_the_door_until_it_closes(self):
        first = self.tls_raw(source="127.0.0.20")
        self.assertEqual(first.connect(client_id="door-1")[0], 0)
        second = self.tls_raw(source="127.0.0.20")
        self.assertEqual(second.connect(client_id="door-2")[0], 0)
        self.assertTrue(self.refused("127.0.0.20"))
        # Both listeners share the count. The door resets the socket at accept, which may
        # reach the client before its connect() returns (OSError) or after (closed).
        with self.assertRaises((ConnectionClosed, OSError)):
            tcp = RawClient(self.port, source="127.0.0.20")
            self.addCleanup(tcp.close)
            tcp.connect(client_id="door-3", timeout=3)
        first.close()
        wait_for(lambda: not self.refused("127.0.0.20"), context=self.context,
                 message="a TLS connection from 127.0.0.20 after one of its two closed")


@requires_mqttd("the process tree's start-up")
class BadCertificateTests(BrokerTestCase):
    def setUp(self):  # no broker: it must not start
        pass

    def test_a_missing_certificate_stops_start_up_in_one_line(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        config = os.path.join(workdir, "mqttd.toml")
        with open(config, "w") as f:
            f.write(TREE)
        result = run_twistd_mqttd(
            ["--config", config, "--data-dir", os.path.join(workdir, "data"),
             "--listen", f"tcp:0:interface={HOST}",
             "--listen", f"ssl:0:interface={HOST}:privateKey=/no/such/key.pem"], cwd=workdir)
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn("mqttd: configuration error: server.listen[1]: cannot read "
                      "privateKey=/no/such/key.pem: No such file or directory\n", output)
        self.assertNotIn("Traceback", output)
