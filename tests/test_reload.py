"""SIGHUP's reload in the single process: the door's limits change for new connections,
broker.max_connections in the door and the broker both, a bad file changes nothing,
and a key that needs a restart is named."""
import functools
import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connack
from mqttd.config import load_config
from mqttd.edge.door import Door
from mqttd.metrics import Metrics
from mqttd.reload import Reloader, changed_keys
from mqttd.service import apply_reload
from tests.support.broker import Client, Harness
from tests.support.logs import capture_logs


class ReloadTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())
        self.write("[limits]\nmax_conn_per_ip = 2\nallowlist = []\n")
        self.config = load_config(self.path)
        self.clock = Clock()
        self.door = Door(self.clock, self.config.limits, self.config.broker.max_connections,
                         Metrics(), LogRateLimit(self.clock, 10, 60.0))
        self.harness = Harness(max_connections=self.config.broker.max_connections)
        self.reloader = Reloader(self.clock, self.path, {}, self.config,
                                 functools.partial(apply_reload, self.door, self.harness.broker))

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_new_limits_apply_to_new_connections_and_keep_the_open_ones(self):
        for _ in range(2):
            self.assertIsNone(self.door.admit("10.0.0.1"))
        self.assertIsNotNone(self.door.admit("10.0.0.1"))
        self.write("[limits]\nmax_conn_per_ip = 3\nallowlist = []\nbanned = [\"10.9.0.0/16\"]\n")
        applied = self.reloader.reload()
        self.assertEqual(applied, ["limits.max_conn_per_ip", "limits.banned"])
        self.assertEqual(self.door.open_from("10.0.0.1"), 2)  # nothing dropped
        self.assertIsNone(self.door.admit("10.0.0.1"))
        self.assertEqual(self.door.admit("10.9.3.4").limit, "limits.banned")

    def test_a_bad_file_changes_nothing(self):
        self.write("[limits]\nmax_conn_per_ip = 3\nbanned = [\"not-an-ip\"]\n")
        events = capture_logs(self)
        self.assertIsNone(self.reloader.reload())
        self.assertTrue(any("not reloaded" in e.get("log_format", "") for e in events))
        self.assertIsNone(self.door.admit("10.0.0.1"))
        self.assertIsNone(self.door.admit("10.0.0.1"))
        self.assertIsNotNone(self.door.admit("10.0.0.1"))  # still 2

    def test_keys_that_need_a_restart_are_named(self):
        self.write("[limits]\nmax_conn_per_ip = 2\nallowlist = []\n[broker]\nmax_inflight = 7\n"
                   "max_connections = 5\n")
        events = capture_logs(self)
        applied = self.reloader.reload()
        self.assertEqual(applied, ["broker.max_connections"])
        warned = [e for e in events if "only after a restart" in e.get("log_format", "")]
        self.assertEqual(len(warned), 1)
        self.assertIn("broker.max_inflight", warned[0]["keys"])

    def test_max_connections_reaches_the_broker_too(self):
        """Both check it: raised, the door and the broker let the sockets past the old
        cap in; lowered, both keep the open ones and refuse new ones."""
        self.write("[limits]\nmax_conn_per_ip = 100\nallowlist = []\n[broker]\n"
                   "max_connections = 2\n")
        self.assertEqual(self.reloader.reload(), ["broker.max_connections",
                                                  "limits.max_conn_per_ip"])
        h = self.harness
        clients = [self.admitted(h) for _ in range(2)]
        self.assertEqual(self.door.admit("10.0.0.1").limit, "broker.max_connections")
        self.assertTrue(Client(h).closed)
        self.write("[limits]\nmax_conn_per_ip = 100\nallowlist = []\n[broker]\n"
                   "max_connections = 4\n")
        self.assertEqual(self.reloader.reload(), ["broker.max_connections"])
        clients += [self.admitted(h) for _ in range(2)]
        self.assertEqual(self.door.admit("10.0.0.1").limit, "broker.max_connections")
        self.write("[limits]\nmax_conn_per_ip = 100\nallowlist = []\n[broker]\n"
                   "max_connections = 1\n")
        self.assertEqual(self.reloader.reload(), ["broker.max_connections"])
        self.assertFalse(any(c.closed for c in clients))
        self.assertEqual(self.door.admit("10.0.0.1").limit, "broker.max_connections")
        self.assertTrue(Client(h).closed)
        self.assertEqual(self.reloader.config.broker.max_connections, 1)

    def admitted(self, harness):
        """One socket through the door (from 10.0.0.1) and into the broker."""
        self.assertIsNone(self.door.admit("10.0.0.1"))
        client = Client(harness)
        self.assertEqual(client.connect(f"c{harness.broker.metrics.mqtt_connections_open}"),
                         Connack(False, 0))
        return client

    def test_changed_keys(self):
        a = load_config(None)
        b = load_config(None, {"server.data_dir": "/x"})
        self.assertEqual(changed_keys(a, b), ["server.data_dir"])
