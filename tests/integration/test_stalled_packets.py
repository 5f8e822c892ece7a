"""Raw sockets stalled in the middle of a packet are closed at broker.packet_timeout.

The audit's case: connections with keepalive 0, each stalled halfway through a 900 kB
PUBLISH, stayed open (and held their half packet) for good; partial CONNECTs stayed
until idle_timeout, again and again. Here idle_timeout is a minute, so only the packet
deadline can close them in time.
"""
import time

from tests.integration.support.process import ANONYMOUS, requires_mqttd
from tests.integration.support.raw_client import connect_packet, publish_packet
from tests.integration.support.testcase import BrokerTestCase

TIMEOUT = 1.0
LATEST = TIMEOUT + 2.0  # room for a loaded machine
STALLED = 10


@requires_mqttd("broker.packet_timeout")
class StalledPacketTests(BrokerTestCase):
    config = ANONYMOUS + f"[broker]\npacket_timeout = {TIMEOUT}\nidle_timeout = 60.0\n"

    def assertClosedByDeadline(self, clients, sent_at):
        for raw in clients:
            closed = raw.wait_closed(timeout=LATEST + 2)
            elapsed = closed - sent_at
            self.assertGreaterEqual(elapsed, TIMEOUT * 0.8, f"closed too early, {elapsed:.2f}s")
            self.assertLessEqual(elapsed, LATEST, f"closed too late, after {elapsed:.2f}s")

    def test_connections_stalled_mid_publish_are_closed(self):
        idle = self.raw()
        self.assertEqual(idle.connect(client_id=self.new_id("idle"), keepalive=0), (0, False))
        half = publish_packet("stall/t", b"x" * 900_000)[:450_000]
        clients = []
        for i in range(STALLED):
            raw = self.raw()
            self.assertEqual(raw.connect(client_id=self.new_id("stall"), keepalive=0), (0, False))
            clients.append(raw)
        for raw in clients:
            raw.send(half)
        sent_at = time.monotonic()
        self.assertClosedByDeadline(clients, sent_at)
        self.assertTrue(idle.is_open(0.05), "a connection with nothing unfinished was closed")
        self.assertGreaterEqual(self.broker.output().count(": packet timeout"), STALLED,
                                self.context())
        self.assertRoundTrip()

    def test_connections_stalled_mid_connect_are_closed(self):
        connect = connect_packet(client_id="c" * 100, will=("w", b"x" * 60_000, 0, False))
        clients = [self.raw() for _ in range(STALLED)]
        for raw in clients:
            raw.send(connect[:len(connect) // 2])
        sent_at = time.monotonic()
        self.assertClosedByDeadline(clients, sent_at)
        self.assertRoundTrip()
