"""The service tree: what twistd runs is wired the way the promise needs."""
import os
import sqlite3

import twisted.test
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config
from mqttd.ingest.client import WebhookStore
from mqttd.service import build_service


def config_for(data_dir, **sections):
    document = {"server": {"data_dir": data_dir, "listen": ["tcp:1883:interface=127.0.0.1"]}}
    document.update(sections)
    return parse_config(document)


class WiringTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.data_dir = self.mktemp()

    def test_broker_acknowledges_through_the_webhook_store(self):
        root = build_service(config_for(self.data_dir), self.reactor)
        self.assertIsInstance(root.broker.store, WebhookStore)
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "mqttd.db")))

    def test_built_in_ingest_address_reaches_the_webhook_client(self):
        """The ingest tier binds an ephemeral loopback port; the broker's client learns it."""
        from twisted.internet import reactor

        config = parse_config({"server": {"data_dir": self.data_dir,
                                          "listen": ["tcp:0:interface=127.0.0.1"]}})
        root = build_service(config, reactor)
        self.assertIsNone(root.webhook.url)
        root.privilegedStartService()
        self.addCleanup(root.stopService)
        port = root.ingest._listener._waitingForPort.result.getHost().port
        self.assertNotEqual(port, 0)
        self.assertEqual(root.webhook.url, f"http://127.0.0.1:{port}/v1/messages")

    def test_external_webhook_url_is_kept(self):
        config = config_for(self.data_dir, webhook={"url": "http://10.0.0.1:9/v1/messages"},
                            ingest={"enabled": False})
        root = build_service(config, self.reactor)
        root.privilegedStartService()
        self.assertEqual(root.webhook.url, "http://10.0.0.1:9/v1/messages")
        self.assertEqual(len(self.reactor.tcpServers), 1)  # no built-in ingest
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "mqttd.db")))

    def test_database_from_a_newer_mqttd_stops_start_up(self):
        os.makedirs(self.data_dir)
        path = os.path.join(self.data_dir, "mqttd.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 999")
        db.close()
        with open(path, "rb") as f:
            before = f.read()
        with self.assertRaises(ConfigError) as caught:
            build_service(config_for(self.data_dir), self.reactor)
        self.assertIn(path, str(caught.exception))
        self.assertIn("999", str(caught.exception))
        # Left exactly as it was: not even switched to WAL (no -wal/-shm files).
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(self.data_dir), ["mqttd.db"])

    def test_not_a_database_stops_start_up(self):
        os.makedirs(self.data_dir)
        with open(os.path.join(self.data_dir, "mqttd.db"), "wb") as f:
            f.write(b"this is not sqlite" * 100)
        with self.assertRaises(ConfigError) as caught:
            build_service(config_for(self.data_dir), self.reactor)
        self.assertIn("mqttd.db", str(caught.exception))

    def test_bad_endpoints_name_their_key(self):
        with self.assertRaises(ConfigError) as caught:
            build_service(config_for(self.data_dir, ingest={"listen": "nonsense:1"}), self.reactor)
        self.assertTrue(str(caught.exception).startswith("ingest.listen: bad endpoint"))
        with self.assertRaises(ConfigError) as caught:
            build_service(parse_config({"server": {"data_dir": self.data_dir, "listen": ["tcp:x"]}}),
                          self.reactor)
        self.assertTrue(str(caught.exception).startswith("server.listen[0]: bad endpoint"))

    def test_built_in_ingest_must_listen_on_tcp(self):
        """The broker's own client reaches the built-in tier over plain TCP: a unix or
        TLS listener is refused at start (not left to time every message out)."""
        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        for listen in ("unix:" + os.path.abspath(self.mktemp()), f"ssl:0:privateKey={pem}"):
            with self.assertRaises(ConfigError) as caught:
                build_service(config_for(self.data_dir, ingest={"listen": listen}), self.reactor)
            self.assertTrue(str(caught.exception).startswith(
                "ingest.listen: the broker reaches its built-in ingest tier over plain TCP"))
            self.assertFalse(os.path.exists(os.path.join(self.data_dir, "mqttd.db")))
        build_service(config_for(self.data_dir, ingest={"listen": "tcp6:0:interface=\\:\\:1"}),
                      self.reactor)
        # Serving someone else's brokers while this one posts to webhook.url: any endpoint.
        config = config_for(self.data_dir, ingest={"listen": "unix:" + os.path.abspath(self.mktemp())},
                            webhook={"url": "http://10.0.0.1:9/v1/messages"})
        self.assertEqual(build_service(config, self.reactor).webhook.url,
                         "http://10.0.0.1:9/v1/messages")

    def test_unreadable_tls_key_is_a_config_error(self):
        missing = os.path.abspath(self.mktemp())
        with self.assertRaises(ConfigError) as caught:
            build_service(parse_config({"server": {"data_dir": self.data_dir, "listen": [
                f"ssl:8883:privateKey={missing}"]}}), self.reactor)
        self.assertTrue(str(caught.exception).startswith("server.listen[0]: bad endpoint"))
        self.assertIn("No such file", str(caught.exception))
        not_a_key = os.path.abspath(self.mktemp())
        with open(not_a_key, "w") as f:
            f.write("not a PEM file\n")
        with self.assertRaises(ConfigError) as caught:
            build_service(config_for(self.data_dir, ingest={"listen": f"ssl:0:privateKey={not_a_key}"},
                                     webhook={"url": "http://10.0.0.1:9/v1/messages"}), self.reactor)
        self.assertTrue(str(caught.exception).startswith("ingest.listen: bad endpoint"))

    def test_no_store_at_all_is_a_config_error(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ingest": {"enabled": False}})
        self.assertTrue(str(caught.exception).startswith("webhook.url: must be set"))
        with self.assertRaises(ConfigError):
            parse_config({"webhook": {"url": "ftp://x"}})
