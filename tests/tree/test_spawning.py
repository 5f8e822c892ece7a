"""tree.spawning on a fake process reactor: a worker's argv, brief and fds, its channel
wired and handed over once open; the brief of later runs after ``reconfigure``; the
ingest child's fds; ingest.listen refused where the workers could not post to it."""
import json
import os
import shutil
import sys
import tempfile

import attrs
from twisted.trial import unittest

from mqttd.config import load_config, parse_config
from mqttd.edge.handoff import MasterChannel
from mqttd.edge.handoff_wire import encode_message
from mqttd.manage.tree_metrics import TreeMetrics
from mqttd.metrics import Metrics
from mqttd.tree.ingest_link import IngestLink
from mqttd.tree.relay import Relay
from mqttd.tree.spawning import Spawner, bind_ingest
from mqttd.tree.supervisor import Supervisor
from tests.support.processes import FakeProcessReactor


class SpawnerTests(unittest.TestCase):
    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.metrics = Metrics()
        self.config = load_config(None, {"broker.max_connections": 7})
        self.tree_metrics = TreeMetrics(self.reactor, self.metrics, "mqttd-master")
        self.spawner = Spawner(self.reactor, self.config, self.tree_metrics,
                               Relay(self.metrics, 1 << 20, True), 4096)
        self.said, self.channels = [], []
        self.supervisor = Supervisor(self.reactor, self.metrics)
        self.spawner.add_worker(self.supervisor, 2, "http://127.0.0.1:1/v1/messages",
                                lambda *said: self.said.append(said),
                                lambda slot, channel: self.channels.append((slot, channel)),
                                lambda slot: None)

    def brief(self, process):
        self.assertTrue(process.stdin_closed)
        return json.loads(bytes(process.stdin))

    def test_a_worker_gets_its_brief_on_stdin_and_its_channel_as_fd_3(self):
        self.supervisor.startService()
        [process] = self.reactor.processes
        self.assertEqual(process.args, [sys.executable, "-m", "mqttd.tree.child",
                                        "mqttd-worker-2"])
        self.assertIsNone(process.env)  # the master's environment, not an empty one
        self.assertEqual(sorted(process.child_fds), [0, 1, 2, 3])
        brief = self.brief(process)
        self.assertEqual({key: brief[key] for key in ("role", "slot", "name", "channel_fd",
                                                      "ingest_url")},
                         {"role": "worker", "slot": 2, "name": "mqttd-worker-2",
                          "channel_fd": 3, "ingest_url": "http://127.0.0.1:1/v1/messages"})
        self.assertEqual(parse_config(brief["config"]).broker.max_connections, 7)
        # The master's end is open on the reactor and handed over, wired to the worker.
        [(channel, _)] = self.reactor.adopted
        self.assertIsInstance(channel, MasterChannel)
        self.assertEqual(self.channels, [(2, channel)])
        channel.dataReceived(encode_message("ready", {}))
        self.assertEqual(self.said, [(2, "ready", {})])

    def test_reconfigure_briefs_the_runs_started_later(self):
        self.supervisor.startService()
        self.spawner.reconfigure(attrs.evolve(self.config, broker=attrs.evolve(
            self.config.broker, max_connections=11)))
        self.reactor.processes[0].exit(1)
        self.reactor.advance(60)  # the restart delay
        first, second = self.reactor.processes
        self.assertEqual(parse_config(self.brief(first)["config"]).broker.max_connections, 7)
        self.assertEqual(parse_config(self.brief(second)["config"]).broker.max_connections, 11)
        self.assertEqual([slot for slot, _ in self.channels], [2, 2])  # a fresh channel

    def test_the_ingest_child_gets_the_listening_socket_and_its_channel(self):
        supervisor = Supervisor(self.reactor, self.metrics)
        ingest = attrs.evolve(self.config.ingest, listen="tcp:0:interface=127.0.0.1")
        link, url = self.spawner.add_ingest(ingest, supervisor)
        self.assertIsInstance(link, IngestLink)
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/v1/messages$")
        supervisor.startService()
        [process] = self.reactor.processes
        brief = self.brief(process)
        self.assertEqual((brief["role"], brief["listen_fd"], brief["channel_fd"],
                          brief["listen_family"]), ("ingest", 3, 4, "inet"))
        self.assertEqual(sorted(process.child_fds), [0, 1, 2, 3, 4])


class BindIngestTests(unittest.TestCase):
    def ingest(self, **changes):
        return attrs.evolve(load_config(None).ingest, **changes)

    def test_not_over_tcp_is_refused(self):
        directory = tempfile.mkdtemp()  # short: a UNIX socket's path is 107 bytes at most
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "ingest.sock")
        with self.assertRaises(SystemExit) as raised:
            bind_ingest(self.ingest(listen=f"unix:{path}"))
        self.assertIn("over TCP", str(raised.exception))

    def test_ipv6_loopback_gets_a_bracketed_url(self):
        sock, url = bind_ingest(self.ingest(listen="tcp6:0:interface=\\:\\:1"))
        self.addCleanup(sock.close)
        self.assertRegex(url, r"^http://\[::1\]:\d+/v1/messages$")

