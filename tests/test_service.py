"""The service tree: what twistd runs is wired the way the promise needs."""
import os
import sqlite3

import twisted.test
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config
from mqttd.ingest.client import WebhookSink
from mqttd.ingest.service import exit_failed
from mqttd.listeners import KeyedListener
from mqttd.service import build_service
from tests.support.service import MemoryReactorOnInterfaces


def config_for(data_dir, **sections):
    # workers = 0: build_service builds the one process (the default is the tree).
    document = {"server": {"workers": 0, "data_dir": data_dir, "listen": ["tcp:1883:interface=127.0.0.1"]}}
    document.update(sections)
    return parse_config(document)


class WiringTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.data_dir = self.mktemp()

    def test_broker_acknowledges_through_the_webhook_store(self):
        root = build_service(config_for(self.data_dir), self.reactor)
        self.assertIsInstance(root.broker.sink, WebhookSink)
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "mqttd.db")))

    def test_built_in_ingest_address_reaches_the_webhook_client(self):
        """The ingest tier binds an ephemeral loopback port; the broker's client learns it."""
        from twisted.internet import reactor

        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.data_dir,
                                          "listen": ["tcp:0:interface=127.0.0.1"]}})
        root = build_service(config, reactor)
        self.assertIsNone(root.webhook.url)
        root.privilegedStartService()
        self.addCleanup(root.stopService)
        port = root.ingest._listener._waitingForPort.result.getHost().port
        self.assertNotEqual(port, 0)
        self.assertEqual(root.webhook.url, f"http://127.0.0.1:{port}/v1/messages")

    def test_ingest_tier_on_a_unix_socket_for_other_brokers(self):
        """With webhook.url set, ingest.listen may be a unix socket: it binds, says
        where, and closes on stop (reading a host from its address broke both)."""
        from twisted.internet import reactor
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        import shutil
        import tempfile

        short = tempfile.mkdtemp(prefix="mqttd-t")  # AF_UNIX paths are short (108 bytes)
        self.addCleanup(shutil.rmtree, short)
        path = os.path.join(short, "ingest.sock")
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.data_dir,
                                          "listen": ["tcp:0:interface=127.0.0.1"]},
                               "ingest": {"listen": f"unix:{path}"},
                               "webhook": {"url": "http://127.0.0.1:9/v1/messages"}})
        root = build_service(config, reactor)
        root.privilegedStartService()
        self.addCleanup(root.stopService)
        listener = root.ingest._listener
        self.assertEqual(listener._waitingForPort.result.getHost().name, path.encode())
        self.assertIn(f"ingest webhook listening on UNIXAddress('{path}')",
                      [e.get("log_format", "").format(**e) for e in events if "address" in e])
        yield listener.stopService()
        self.assertFalse(os.path.exists(path))

    test_ingest_tier_on_a_unix_socket_for_other_brokers = defer.inlineCallbacks(
        test_ingest_tier_on_a_unix_socket_for_other_brokers)

    def test_external_webhook_url_is_kept(self):
        config = config_for(self.data_dir, webhook={"url": "http://10.0.0.1:9/v1/messages"},
                            ingest={"enabled": False})
        root = build_service(config, self.reactor)
        root.privilegedStartService()
        self.assertEqual(root.webhook.url, "http://10.0.0.1:9/v1/messages")
        self.assertEqual(len(self.reactor.tcpServers), 1)  # no built-in ingest
        # mqttd.db holds the gate's accounts, tokens and bans all the same.
        db = sqlite3.connect(os.path.join(self.data_dir, "mqttd.db"))
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT count(*) FROM accounts").fetchone(), (0,))

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
            # workers = 0: build_service builds the one process (the default is the tree).
            build_service(parse_config({"server": {"workers": 0, "data_dir": self.data_dir, "listen": ["tcp:x"]}}),
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
            # workers = 0: build_service builds the one process (the default is the tree).
            build_service(parse_config({"server": {"workers": 0, "data_dir": self.data_dir, "listen": [
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


class ListenFailureTests(unittest.TestCase):
    """A port that cannot be bound stops start-up with one line naming the key."""

    def listener(self, description, key="server.listen[0]"):
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory

        return KeyedListener(serverFromString(reactor, description), Factory(), key,
                             description)

    def test_port_in_use(self):
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        description = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        with self.assertRaises(SystemExit) as caught:
            self.listener(description).privilegedStartService()
        self.assertEqual(str(caught.exception),
                         f"mqttd: server.listen[0]: cannot listen on {description}: "
                         f"Address already in use")

    def test_unix_socket_in_a_missing_directory(self):
        description = "unix:" + os.path.join(os.path.abspath(self.mktemp()), "no", "mqtt.sock")
        with self.assertRaises(SystemExit) as caught:
            self.listener(description, "ingest.listen").privilegedStartService()
        self.assertEqual(str(caught.exception),
                         f"mqttd: ingest.listen: cannot listen on {description}: "
                         f"No such file or directory")


class StoreStartTests(unittest.TestCase):
    """The ingest tier starts only on a database it can use; else mqttd stops."""

    def setUp(self):
        self.reactor = MemoryReactorOnInterfaces()
        self.data_dir = self.mktemp()
        self.root = build_service(config_for(self.data_dir), self.reactor)
        self.path = os.path.join(self.data_dir, "mqttd.db")

    def test_unusable_database_at_start_is_one_line(self):
        """Checked again once twistd dropped privileges (--uid): here, a file that
        stopped being a database after makeService prepared it."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)
        with open(self.path, "wb") as f:
            f.write(b"not a database, " * 64)
        with self.assertRaises(SystemExit) as caught:
            self.root.ingest.startService()
        self.assertEqual(str(caught.exception),
                         f"mqttd: server.data_dir: database {self.path}: "
                         f"DatabaseError: file is not a database")
        self.assertFalse(self.root.ingest.running)

    def test_a_store_that_fails_to_open_stops_mqttd(self):
        from twisted.internet.defer import fail

        ingest = self.root.ingest
        ingest.store.start = lambda: fail(RuntimeError("disk gone"))
        ingest.startService()
        self.addCleanup(ingest.writer.close)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # ... with status 1 once shut down (twistd would exit 0): systemd restarts it.
        self.assertEqual(self.reactor.triggers["after"]["shutdown"], [(exit_failed, (), {})])


class IngestStopTests(unittest.TestCase):
    """Stopping the tier commits what the writer accepted, then closes the store."""

    @defer.inlineCallbacks
    def test_stop_drains_the_writer_then_closes_the_store(self):
        from twisted.internet import reactor

        from mqttd.store.sqlite import StoreClosed
        from tests.support.store import row

        data_dir = self.mktemp()
        # workers = 0: build_service builds the one process (the default is the tree).
        root = build_service(parse_config({
            "server": {"workers": 0, "data_dir": data_dir,
                       "listen": ["tcp:0:interface=127.0.0.1"]},
            "ingest": {"flush_interval": 4000.0}}), reactor)
        ingest = root.ingest
        ingest.privilegedStartService()
        ingest.startService()
        committed = ingest.writer.submit([row("k1")])  # waits for its 4 s timer
        yield ingest.stopService()
        self.assertEqual((yield committed), 1)  # committed by the drain, not the timer
        db = sqlite3.connect(os.path.join(data_dir, "mqttd.db"))
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT key FROM messages").fetchall(), [("k1",)])
        yield self.assertFailure(ingest.store.count(), StoreClosed)
