"""SIGHUP's reload: the door's limits change for new connections, the parts (the gate,
the ACL, a broker's max_connections) get the new [auth] and [flapping_detect], a bad
file or a part that cannot be made ready changes nothing at all, and a key that needs a
restart is named."""
import os
import signal
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connack
from mqttd.config import load_config
from mqttd.edge.door import Door
from mqttd.metrics import Metrics
from mqttd.reload import (Reloader, acl_from_payload, acl_part, acl_payload, changed_keys,
                          max_connections_part, running_config)
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
        self.prepared = []  # (old, new) each part was asked to make ready
        self.applied = []  # the new configs put in force, in order
        self.harness = Harness(max_connections=self.config.broker.max_connections)
        self.reloader = Reloader(self.clock, self.path, {}, self.config, self.door,
                                 [self.part, max_connections_part(
                                     self.harness.broker.reload_max_connections)])

    def part(self, old, new):
        self.prepared.append((old, new))
        return lambda: self.applied.append(new)

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

    def test_sighup_is_caught_from_the_privileged_start_until_the_stop(self):
        calls = []
        reloader = Reloader(SimpleNamespace(callFromThread=calls.append), self.path, {},
                            self.config, self.door)
        before = signal.getsignal(signal.SIGHUP)
        reloader.privilegedStartService()  # before anything starts: no SIGHUP may kill it
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(calls, [reloader.reload])
        reloader.startService()
        reloader.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

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

    def test_auth_and_flapping_keys_go_to_the_parts_and_restart_keys_stay(self):
        self.write("[limits]\nmax_conn_per_ip = 2\nallowlist = []\n"
                   "[auth]\nrate_per_token = 1.0\nallow_anonymous = true\n"
                   "negative_cache_ttl = 3.0\n"
                   '[[auth.acl]]\nall = true\ntopic = "x/#"\npermission = "deny"\n'
                   "[flapping_detect]\nenable = false\n[broker]\nmax_inflight = 7\n")
        events = capture_logs(self)
        applied = self.reloader.reload()
        self.assertEqual(applied, ["auth.allow_anonymous", "auth.rate_per_token", "auth.acl",
                                   "flapping_detect.enable"])
        (old, new), = self.prepared
        self.assertIs(old, self.config)
        self.assertEqual(self.applied, [new])
        self.assertEqual((new.auth.rate_per_token, new.auth.allow_anonymous,
                          new.flapping_detect.enable, len(new.auth.acl)), (1.0, True, False, 1))
        # Keys that need a restart keep their running values:
        self.assertEqual((new.auth.negative_cache_ttl, new.broker.max_inflight), (10.0, 32))
        self.assertIs(self.reloader.config, new)
        warned = [e for e in events if "only after a restart" in e.get("log_format", "")]
        self.assertEqual(warned[0]["keys"], "broker.max_inflight, auth.negative_cache_ttl")

    def test_a_part_that_cannot_be_made_ready_changes_nothing_at_all(self):
        def refusing(old, new):
            raise ValueError("acl payload of 5000000 bytes exceeds 4194304")

        self.reloader = Reloader(self.clock, self.path, {}, self.config, self.door,
                                 [self.part, refusing])
        self.write("[limits]\nmax_conn_per_ip = 3\nallowlist = []\n"
                   "[auth]\nallow_anonymous = true\n")
        events = capture_logs(self)
        self.assertIsNone(self.reloader.reload())
        self.assertEqual((len(self.prepared), self.applied), (1, []))
        self.assertIs(self.reloader.config, self.config)
        refused = [e for e in events if "not reloaded" in e.get("log_format", "")]
        self.assertIn("exceeds", refused[0]["error"])
        for _ in range(2):  # the door's cap is still 2
            self.assertIsNone(self.door.admit("10.0.0.1"))
        self.assertIsNotNone(self.door.admit("10.0.0.1"))

    def test_a_file_that_does_not_validate_reaches_no_part(self):
        self.write("[auth]\nrate_per_token = -1.0\n[flapping_detect]\nenable = false\n")
        self.assertIsNone(self.reloader.reload())
        self.assertEqual(self.prepared, [])

    def test_running_config_takes_only_the_reloadable_keys(self):
        old = load_config(None)
        new = load_config(None, {"auth.require_password": True, "auth.token_cache_size": 5,
                                 "flapping_detect.max_count": 3, "server.data_dir": "/x"})
        running = running_config(old, new)
        self.assertEqual((running.auth.require_password, running.flapping_detect.max_count),
                         (True, 3))
        self.assertEqual((running.auth.token_cache_size, running.server.data_dir),
                         (old.auth.token_cache_size, old.server.data_dir))


class AclPartTests(unittest.TestCase):
    def configs(self, *rules, no_match="allow"):
        old = load_config(None)
        new = load_config(None, {"auth.acl": list(rules), "auth.acl_no_match": no_match})
        return old, new

    def test_new_rules_are_compiled_and_handed_on_and_the_same_ones_are_not(self):
        handed = []
        prepare = acl_part(handed.append)
        old, new = self.configs({"all": True, "topic": "a/#", "permission": "deny"})
        prepare(old, new)()
        self.assertEqual(len(handed), 1)
        self.assertFalse(handed[0].for_client("c", None, None).may_publish("a/b"))
        prepare(new, new)()
        self.assertEqual(len(handed), 1)

    def test_the_workers_message_carries_the_rules_whole(self):
        _, new = self.configs({"user": "u", "topic": "in/%c", "action": "subscribe",
                               "permission": "allow"}, no_match="deny")
        rules = acl_from_payload(acl_payload(new.auth))
        acl = rules.for_client("dev", "u", None)
        self.assertTrue(acl.may_subscribe("in/dev"))
        self.assertFalse(acl.may_publish("in/dev"))
        self.assertFalse(rules.for_client("dev", "other", None).may_publish("x"))  # no_match
        self.assertRaises((KeyError, TypeError), acl_from_payload, {"rules": [{"bad": 1}]})
