"""SIGHUP in the tree, in memory: the master's ``apply_reload`` changes its door's cap
and sends each worker "max_connections", which the worker's broker applies; a worker
started after the reload is briefed with the new cap.

The master runs on a fake process reactor (its workers are not spawned: each one's
brief is read from its stdin) and each worker is ``build_worker`` on a reactor of its
own, the two ends of their channel joined by carrying bytes.
"""
import json
import socket

import attrs

from twisted.trial import unittest

from mqttd.broker.protocol import MQTTServerFactory
from mqttd.codec import Connack
from mqttd.config import load_config, parse_config
from mqttd.reload import Reloader
from mqttd.tree.master import Master
from mqttd.tree.worker import build_worker
from tests.support.broker import Client
from tests.support.processes import FakeProcessReactor


class _Worker:
    """A worker of slot ``slot`` built from its brief; ``factory`` and ``clock`` so that
    ``tests.support.broker.Client`` connects to its broker."""

    def __init__(self, testcase, brief):
        self.clock = FakeProcessReactor()  # adoptStreamConnection: its channel's end
        ours, theirs = socket.socketpair()
        testcase.addCleanup(ours.close)
        brief = dict(brief, channel_fd=theirs.detach())
        self.root = build_worker(parse_config(brief["config"]), self.clock, brief)
        self.root.startService()
        testcase.addCleanup(self.root.stopService)
        [(self.channel, self.transport)] = self.clock.adopted
        self.broker = self.root.broker
        self.factory = MQTTServerFactory(self.broker, self.clock)


class TreeReloadTests(unittest.TestCase):
    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.config = load_config(None, {
            "server.data_dir": self.mktemp(), "server.workers": 2,
            "server.listen": ["tcp:0:interface=127.0.0.1"], "ingest.enabled": False,
            "webhook.url": "http://127.0.0.1:9/v1/messages", "broker.max_connections": 2,
            "auth.allow_anonymous": True})
        self.master = Master(self.reactor, self.config)
        self.master.privilegedStartService()
        self.master.supervisor.startService()  # the workers' runs, each with its channel
        self.addCleanup(self.stop)
        self.workers = [_Worker(self, json.loads(bytes(process.stdin)))
                        for process in self.reactor.processes]
        self.pump()

    def stop(self):
        for process in self.reactor.processes:
            process.exit_on["TERM"] = ("exit", 0)
        stopped = self.master.stopService()
        self.reactor.advance(1)
        return stopped

    def pump(self):
        """Carry what each end wrote to the other, both ways, until nothing moves."""
        pairs = [(master_end, master_transport, worker)
                 for (master_end, master_transport), worker
                 in zip(self.reactor.adopted, self.workers)]
        moved = True
        while moved:
            moved = False
            for master_end, master_transport, worker in pairs:
                for transport, reader in ((master_transport, worker.channel),
                                          (worker.transport, master_end)):
                    data = transport.value()
                    if data:
                        transport.clear()
                        reader.dataReceived(data)
                        moved = True

    def client(self, worker):
        """A socket into ``worker``'s broker, gone at the end (its clean stop waits)."""
        client = Client(worker)
        self.addCleanup(client.lose)
        return client

    def reload(self, max_connections):
        """SIGHUP's Reloader on the master's door and parts, as ``twistd mqttd`` wires it."""
        new = attrs.evolve(self.config, broker=attrs.evolve(
            self.config.broker, max_connections=max_connections))
        reloader = Reloader(self.reactor, None, {}, self.config, self.master.door,
                            self.master.reload_parts, load=lambda path, overrides: new)
        self.assertIn("broker.max_connections", reloader.reload())
        self.config = reloader.config
        self.pump()

    def test_every_worker_s_broker_takes_the_new_cap(self):
        worker = self.workers[0]
        clients = [self.client(worker) for _ in range(2)]
        self.assertTrue(self.client(worker).closed)  # its own check, at the start-up cap
        self.reload(4)
        self.assertEqual([w.broker.config.max_connections for w in self.workers], [4, 4])
        clients += [self.client(worker) for _ in range(2)]
        self.assertEqual([c.connect(f"c{i}") for i, c in enumerate(clients)],
                         [Connack(False, 0)] * 4)
        self.assertTrue(self.client(worker).closed)
        self.reload(1)
        self.assertEqual([w.broker.config.max_connections for w in self.workers], [1, 1])
        self.assertFalse(any(c.closed for c in clients))  # a lowered cap drops no one
        self.assertTrue(self.client(worker).closed)

    def test_the_door_takes_it_and_a_worker_started_later_is_briefed_with_it(self):
        door = self.master.door
        for _ in range(2):
            self.assertIsNone(door.admit("10.0.0.1"))
        self.assertEqual(door.admit("10.0.0.1").limit, "broker.max_connections")
        self.reload(3)
        self.assertIsNone(door.admit("10.0.0.1"))
        self.reactor.processes[0].exit(1)  # worker 1 dies and is started again
        self.reactor.advance(60)
        restarted = self.reactor.processes[-1]
        self.assertEqual(len(self.reactor.processes), 3)
        brief = json.loads(bytes(restarted.stdin))
        self.assertEqual(brief["slot"], 1)
        self.assertEqual(parse_config(brief["config"]).broker.max_connections, 3)
