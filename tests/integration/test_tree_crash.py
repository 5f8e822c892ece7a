"""kill -9 in the tree under QoS 1 load from many clients: the killed worker is restarted,
its clients (only they) lose their connection, every PUBACKed message is in SQLite
exactly once, and the other worker's clients see no disconnect. Then kill -9 of the
whole tree and a restart: persistent sessions and retained messages are back, and the
QoS 1 messages queued for an offline session are delivered."""
import os
import signal
import time

from mqttd.edge.balancer import Balancer
from tests.integration.support.common import wait_for
from tests.integration.support.database import message_rowids, saved_sessions
from tests.integration.support.durability import DurabilityTestCase, Publisher
from tests.integration.support.process import requires_mqttd
from tests.integration.support.raw_client import (PacketType, RawClient, publish_packet,
                                                  subscribe_packet)
from tests.integration.support.tree import owner, wait_for_children, wait_for_new_pid

WORKERS = ("mqttd-worker-1", "mqttd-worker-2")


def homed(slot, prefix, n):
    """``n`` client ids whose home is worker ``slot`` (the balancer's own hash)."""
    homes = Balancer((1, 2))
    ids = (f"{prefix}{i}" for i in range(10_000))
    return [i for i in ids if homes.home(i) == slot][:n]


@requires_mqttd("the process tree")
class WorkerCrashTests(DurabilityTestCase):
    appliance = "[server]\nworkers = 2\n"

    def start(self):
        self.start_appliance(proxied=False)
        master = self.broker.process.pid
        procs = wait_for_children(master, WORKERS + ("mqttd-ingest",))
        return master, procs

    def publishers_on(self, slot, prefix, n):
        pubs = []
        for client_id in homed(slot, prefix, n):
            pub = Publisher(self.broker.port, client_id, window=10)
            self.addCleanup(pub.close)
            pub.connect()
            pubs.append(pub)
        return pubs

    def test_kill_9_of_one_worker_under_load(self):
        master, procs = self.start()
        victims = self.publishers_on(1, "v-", 10)
        survivors = self.publishers_on(2, "s-", 10)
        victim = procs["mqttd-worker-1"]
        self.assertEqual({owner(p.raw.sock, [victim]) for p in victims}, {victim})
        for pub in victims + survivors:
            pub.start()
        self.wait_progress(victims + survivors, 300)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: all(p.done() for p in victims), 5.0,
                 message="the killed worker's clients to see it", context=self.context)
        wait_for_new_pid(master, WORKERS + ("mqttd-ingest",), "mqttd-worker-1", victim)
        self.wait_progress(survivors, 200)  # the other worker's clients go on meanwhile
        for pub in survivors:
            self.assertIsNone(pub.closed_at, f"{pub.client_id} was disconnected\n{self.context()}")
        # The killed worker's devices come back to the restarted worker and publish.
        back = [Publisher(self.broker.port, p.client_id, limit=20, first_seq=100_000)
                for p in victims]
        for pub in back:
            self.addCleanup(pub.close)
            pub.connect().start()
        wait_for(lambda: all(p.all_sent_acked() for p in back), 10.0,
                 message="acks from the restarted worker", context=self.context)
        self.finish_all(survivors + back)
        rows, acked = self.assertAckedStoredOnce(victims + survivors + back, exact=False)
        self.assertGreater(len(acked), 500)


@requires_mqttd("the process tree")
class TreeCrashTests(DurabilityTestCase):
    appliance = "[server]\nworkers = 2\n"

    def saved_offline_before(self, client_id, rowid):
        """Whether ``client_id``'s sessions file has it offline, owed the rows from
        ``rowid`` on (its cursor before it)."""
        cursor, offline_since = saved_sessions(self.broker.data_dir).get(client_id, (0, None))
        return offline_since is not None and cursor < rowid

    def test_kill_9_of_the_whole_tree_then_a_restart(self):
        self.start_appliance(proxied=False)
        keeper_id = homed(2, "keeper-", 1)[0]
        keeper = RawClient(self.broker.port)
        self.assertEqual(keeper.connect(client_id=keeper_id, clean_session=False), (0, False))
        keeper.send(subscribe_packet(1, [("queued/#", 1)]))
        self.assertEqual(keeper.read_packet()[0], PacketType.SUBACK)
        keeper.close()
        # Retained and queued messages from a client on the other worker.
        pub = Publisher(self.broker.port, homed(1, "pub-", 1)[0], limit=5)
        pub.topic = "queued/t"
        self.addCleanup(pub.close)
        pub.connect().start()
        wait_for(pub.all_sent_acked, 10.0, message="the queued messages acknowledged",
                 context=self.context)
        pub.finish()
        setter = RawClient(self.broker.port)
        setter.connect(client_id="setter")
        setter.send(publish_packet("ret/t", b"kept", qos=1, retain=True, packet_id=1))
        self.assertEqual(setter.read_packet()[0], PacketType.PUBACK)
        setter.close()
        # What a crash leaves of the keeper: its sessions file saved it offline (the
        # save comes up to 100 ms after the change), its cursor before the queued rows.
        first = message_rowids(self.broker.db_path, "queued/t")[0]
        wait_for(lambda: self.saved_offline_before(keeper_id, first), 5.0,
                 message=f"{keeper_id} saved offline with its cursor before row {first}",
                 context=lambda: f"saved: {saved_sessions(self.broker.data_dir)}\n"
                                 f"{self.context()}")
        self.broker.sigkill()
        self.broker.start()
        wait_for_children(self.broker.process.pid, WORKERS + ("mqttd-ingest",))
        again = RawClient(self.broker.port)
        self.addCleanup(again.close)
        self.assertEqual(again.connect(client_id=keeper_id, clean_session=False), (0, True))
        got = set()
        deadline = time.monotonic() + 10.0
        while len(got) < 5 and time.monotonic() < deadline:
            ptype, _, body = again.read_packet()
            if ptype == PacketType.PUBLISH:
                length = int.from_bytes(body[:2], "big")
                got.add(bytes(body[2 + length + 2:]))
        self.assertEqual(got, set(pub.acked), self.context())
        later = RawClient(self.broker.port)
        self.addCleanup(later.close)
        later.connect(client_id="later")
        later.send(subscribe_packet(1, [("ret/t", 1)]))
        packets = [later.read_packet(), later.read_packet()]
        publishes = [p for p in packets if p[0] == PacketType.PUBLISH]
        self.assertEqual(len(publishes), 1, packets)
        self.assertTrue(publishes[0][2].endswith(b"kept"))
