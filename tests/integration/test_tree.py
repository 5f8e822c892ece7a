"""The real process tree (``server.workers = 2``): a master that hands each connection to a
worker by client id, one ingest child, all under one ``twistd mqttd``.

Which process holds a connection is read from /proc (the broker end's socket inode),
not from anything mqttd says about itself.
"""
import os
import signal

from mqttd.edge.balancer import Balancer
from tests.integration.support.database import stored_messages
from tests.integration.support.raw_client import PacketType, subscribe_packet
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import owner, wait_for_children, wait_for_new_pid

WORKERS = ("mqttd-worker-1", "mqttd-worker-2")
TREE = "[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"


class TreeTestCase(BrokerTestCase):
    config = TREE

    def setUp(self):
        super().setUp()
        self.master = self.broker.process.pid
        self.procs = wait_for_children(self.master, WORKERS + ("mqttd-ingest",))

    def workers(self):
        return [self.procs[name] for name in WORKERS]


class ProcessTests(TreeTestCase):
    def test_named_processes_under_one_master(self):
        with open(f"/proc/{self.master}/comm") as f:
            self.assertEqual(f.read().strip(), "mqttd-master")
        self.assertEqual(sorted(self.procs), sorted(WORKERS + ("mqttd-ingest",)))

    def test_publishes_through_workers_are_committed(self):
        # Four ids whose home is each worker (the balancer's own hash), so both take part.
        homes = Balancer((1, 2))
        ids = [f"pub-{n}" for n in range(100)]
        chosen = ([i for i in ids if homes.home(i) == 1][:4]
                  + [i for i in ids if homes.home(i) == 2][:4])
        clients = [self.client(client_id) for client_id in chosen]
        for n, client in enumerate(clients):
            for i in range(10):
                client.publish("tree/t", f"{n}-{i}".encode(), qos=1)  # waits for PUBACK
        rows = stored_messages(self.broker.db_path)
        self.assertEqual(sorted(r[1] for r in rows),
                         sorted(f"{n}-{i}".encode() for n in range(8) for i in range(10)))
        holders = {owner(c.client.socket(), self.workers()) for c in clients}
        self.assertEqual(holders, set(self.workers()), "both workers should hold clients")


class StickyTests(TreeTestCase):
    # Fifty reconnects of one id in seconds is flapping (15 in 60 s bans it): the test
    # is about where the id lands, so the detector is off.
    config = TREE + "[flapping_detect]\nenable = false\n"

    def test_each_client_id_lands_on_the_same_worker_every_time(self):
        where = {}
        for round_ in range(50):
            for n in range(20):
                client_id = f"sticky-{n}"
                raw = self.raw()
                raw.connect(client_id=client_id)
                pid = owner(raw.sock, self.workers())
                self.assertIsNotNone(pid)
                self.assertEqual(where.setdefault(client_id, pid), pid,
                                 f"{client_id} moved in round {round_}")
                raw.close()
        self.assertEqual(set(where.values()), set(self.workers()))


class WorkerDeathTests(TreeTestCase):
    def test_a_killed_worker_is_restarted_and_the_other_keeps_its_clients(self):
        clients = [self.client(self.new_id("k")) for _ in range(10)]
        by_worker = {}
        for c in clients:
            by_worker.setdefault(owner(c.client.socket(), self.workers()), []).append(c)
        victim, survivor = self.procs["mqttd-worker-1"], self.procs["mqttd-worker-2"]
        os.kill(victim, signal.SIGKILL)
        for c in by_worker.get(victim, []):
            c.wait_disconnected()
        procs = wait_for_new_pid(self.master, WORKERS + ("mqttd-ingest",), "mqttd-worker-1",
                                 victim)
        for c in by_worker.get(survivor, []):
            c.publish("tree/alive", b"still here", qos=1)  # no disconnect, still acked
        self.assertEqual(procs["mqttd-worker-2"], survivor)
        # The restarted worker takes clients again.
        fresh = self.client(self.new_id("after"))
        fresh.publish("tree/after", b"x", qos=1)


class WorkerPersistenceTests(TreeTestCase):
    def test_a_persistent_session_survives_its_workers_kill_9(self):
        sub = self.raw()
        self.assertEqual(sub.connect(client_id="keeper", clean_session=False), (0, False))
        sub.send(subscribe_packet(1, [("keep/#", 1)]))
        self.assertEqual(sub.read_packet()[0], PacketType.SUBACK)  # after its commit
        home = owner(sub.sock, self.workers())
        name = {pid: n for n, pid in self.procs.items()}[home]
        sub.close()
        os.kill(home, signal.SIGKILL)
        wait_for_new_pid(self.master, WORKERS + ("mqttd-ingest",), name, home)
        again = self.raw()
        # It waits for its home worker, which has read its session back.
        self.assertEqual(again.connect(client_id="keeper", clean_session=False), (0, True))
        procs = wait_for_children(self.master, WORKERS + ("mqttd-ingest",))
        self.assertEqual(owner(again.sock, [procs[name]]), procs[name])

