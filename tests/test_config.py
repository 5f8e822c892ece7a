"""Configuration: defaults, the shipped file, and one clear error per bad key."""
import os
import tomllib

import attrs
from twisted.trial import unittest

from mqttd.config import (
    Config,
    ConfigError,
    User,
    load_config,
    parse_config,
)
from mqttd.tap import Options
from tests.support.config import ConfigErrorAssertions

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, os.pardir, "etc", "mqttd.toml")


class DefaultsTests(unittest.TestCase):
    def test_empty_document_is_defaults(self):
        self.assertEqual(parse_config({}), Config())

    def test_shipped_file_documents_the_defaults(self):
        """etc/mqttd.toml sets every key to its built-in default, so neither can drift.

        A key the file left out would be filled from Config's own default and compared
        with itself, so every key must be set in the file: then each default in the code
        is compared with the literal an operator reads."""
        with open(SHIPPED, "rb") as f:
            document = tomllib.load(f)
        unset = [f"{section.name}.{field.name}" for section in attrs.fields(Config)
                 for field in attrs.fields(section.type)
                 if field.name not in document.get(section.name, {})]
        # auth.users and auth.acl are examples in comments: "none" has no [[...]] spelling.
        # server.workers defaults to this host's cores (mqttd.cores): a number written
        # in the file would be the default of one host only, and fixed on every other.
        # webhook.max_body_size, when not set, follows ingest.max_body_size (set, it
        # would stay put when an operator lowers that one and stop the start).
        # cluster.node_name defaults to the host's name, for the same reason.
        self.assertEqual(unset, ["server.workers", "auth.users", "auth.acl",
                                 "webhook.max_body_size", "cluster.node_name"])
        self.assertEqual(parse_config(document), Config())
        self.assertEqual(Config().auth.users, ())

    def test_defaults_are_safe(self):
        config = Config()
        self.assertFalse(config.auth.allow_anonymous)
        self.assertEqual(config.server.listen, ("tcp:1883:interface=127.0.0.1",))
        self.assertEqual(config.server.data_dir, "./var")


class ErrorTests(ConfigErrorAssertions, unittest.TestCase):
    def test_out_of_range(self):
        self.assertConfigError(
            {"broker": {"max_inflight": 0}}, "broker.max_inflight: must be 1..65535, got 0"
        )

    def test_wrong_type(self):
        self.assertConfigError(
            {"broker": {"max_inflight": "10"}}, "broker.max_inflight: must be an integer, got '10'"
        )

    def test_bool_is_not_an_integer(self):
        self.assertConfigError(
            {"broker": {"max_inflight": True}}, "broker.max_inflight: must be an integer, got True"
        )

    def test_integer_accepted_as_float(self):
        self.assertEqual(parse_config({"broker": {"idle_timeout": 3}}).broker.idle_timeout, 3.0)

    def test_unknown_section(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"brokr": {}})
        self.assertTrue(str(caught.exception).startswith("brokr: unknown section"))

    def test_unknown_key(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"broker": {"max_inflights": 3}})
        self.assertTrue(str(caught.exception).startswith("broker.max_inflights: unknown key"))

    def test_list_item_type(self):
        self.assertConfigError(
            {"server": {"listen": ["tcp:1883", 7]}}, "server.listen[1]: must be a string, got 7"
        )

    def test_empty_listen(self):
        self.assertConfigError(
            {"server": {"listen": []}}, "server.listen: at least one listener is required"
        )

    def test_users(self):
        config = parse_config({"auth": {"users": [{"username": "a", "password": "p"}]}})
        self.assertEqual(config.auth.users, (User("a", "p"),))
        self.assertConfigError(
            {"auth": {"users": [{"username": "a", "password": "p"},
                                {"username": "a", "password": "q"}]}},
            "auth.users: duplicate username 'a'",
        )
        self.assertConfigError(
            {"auth": {"users": [{"password": "p"}]}},
            "auth.users[0].username: must not be empty",
        )

    def test_one_message_must_fit_one_webhook_request(self):
        # 12 MB of packet as base64, 12 bytes a character of a 65535-character topic,
        # username and client id, 1 KiB more (tests/ingest/test_body_budget.py ties it to
        # what the client assumes).
        need = 16_000_000 + 12 * 3 * 65535 + 1024
        self.assertConfigError(
            {"broker": {"max_packet_size": 12_000_000}},
            f"ingest.max_body_size: must be at least {need} (one message of "
            "broker.max_packet_size as the webhook's JSON: 4/3 of it as base64, 12 bytes "
            "a character of topic, username and client id, and 1024 more), got 16777216",
        )
        parse_config({"broker": {"max_packet_size": 12_000_000},
                      "ingest": {"max_body_size": need}})

    def test_body_size_stays_within_sqlites_row_limit(self):
        """A body over SQLITE_MAX_LENGTH could carry a row SQLite refuses, failing the
        group commit it shares with other requests."""
        parse_config({"broker": {"max_packet_size": 268_435_460,
                                 "max_partial_bytes": 268_435_460},
                      "ingest": {"max_body_size": 1_000_000_000}})
        self.assertConfigError({"ingest": {"max_body_size": 1_000_000_001}},
                               "ingest.max_body_size: must be 1024..1000000000, got 1000000001")

    def test_batch_delay_shorter_than_ack_timeout(self):
        self.assertConfigError(
            {"webhook": {"batch_delay": 2.0, "ack_timeout": 1.0}},
            "webhook.batch_delay: must be shorter than webhook.ack_timeout (1), got 2")
        self.assertEqual(parse_config({"webhook": {"batch_delay": 0.9, "ack_timeout": 1.0}})
                         .webhook.batch_delay, 0.9)

    def test_linger_shorter_than_ack_timeout(self):
        self.assertConfigError(
            {"webhook": {"linger": 0.5, "ack_timeout": 0.5}},
            "webhook.linger: must be shorter than webhook.ack_timeout (0.5), got 0.5",
        )
        self.assertEqual(parse_config({"webhook": {"linger": 0.0, "ack_timeout": 0.01}})
                         .webhook.linger, 0.0)

    def test_flush_interval_shorter_than_the_webhook_timeouts(self):
        """A commit timer the broker's requests cannot wait for is refused (the built-in
        tier only: another service's brokers have their own timeouts)."""
        self.assertConfigError(
            {"ingest": {"flush_interval": 20_000.0}},
            "ingest.flush_interval: must be shorter than webhook.request_timeout and "
            "webhook.ack_timeout (5 s = 5000 ms), got 20000 ms")
        self.assertConfigError(
            {"ingest": {"flush_interval": 900.0},
             "webhook": {"ack_timeout": 0.9, "request_timeout": 30.0}},
            "ingest.flush_interval: must be shorter than webhook.request_timeout and "
            "webhook.ack_timeout (0.9 s = 900 ms), got 900 ms")
        self.assertEqual(parse_config({"ingest": {"flush_interval": 4999.0}})
                         .ingest.flush_interval, 4999.0)
        served = parse_config({"ingest": {"flush_interval": 20_000.0},
                               "webhook": {"url": "http://10.0.0.1:9/v1/messages"}})
        self.assertEqual(served.ingest.flush_interval, 20_000.0)

    def test_webhook_url(self):
        """A URL the webhook client could never use is refused at start, with the key."""
        for url, message in [
            ("ftp://127.0.0.1/x", "must be an http:// or https:// URL, got 'ftp://127.0.0.1/x'"),
            ("http://[::1", "not a valid URL (invalid host '[' in url: 'http://[::1'), "
                            "got 'http://[::1'"),
            ("http://ex ample.com/", "not a valid URL (Codepoint U+0020 at position 3 of "
                                     "'ex ample' not allowed), got 'http://ex ample.com/'"),
            ("http:///v1/messages", "has no host, got 'http:///v1/messages'"),
            ("http://127.0.0.1:99999/v1", "port must be 1..65535, got 'http://127.0.0.1:99999/v1'"),
            ("http://127.0.0.1:0/v1", "port must be 1..65535, got 'http://127.0.0.1:0/v1'"),
            ("https://user:s3cret@ingest.example/v1", "must not carry credentials "
                                                      "(user:password@host); put them in webhook.secret or webhook.headers"),
        ]:
            self.assertConfigError({"webhook": {"url": url}}, f"webhook.url: {message}")
        for url in ["http://127.0.0.1:8080/v1/messages", "https://ingest.example/v1/messages",
                    "http://[::1]:8080/", "https://b\u00fccher.example/v1"]:
            self.assertEqual(parse_config({"webhook": {"url": url}}).webhook.url, url)

    def test_unreadable_file(self):
        with self.assertRaises(ConfigError) as caught:
            load_config(self.mktemp())
        self.assertIn("cannot read config", str(caught.exception))

    def test_invalid_toml(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[broker\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertIn("invalid TOML", str(caught.exception))

    def test_not_utf8(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[[auth.users]]\nusername = "d\xe9vice"\npassword = "p"\n')
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(str(caught.exception),
                         f"{path}: not UTF-8 (byte 28); TOML files are UTF-8")

    def test_override_of_a_section_that_is_not_a_table(self):
        """The section's own error, not a traceback from merging the override into it."""
        for value in ("x", 5):
            with self.assertRaises(ConfigError) as caught:
                parse_config({"server": value}, {"server.data_dir": "/srv/mqttd"})
            self.assertEqual(str(caught.exception), f"server: must be a table, got {value!r}")


class CommandLineTests(unittest.TestCase):
    def test_overrides_win_over_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[server]\nlisten = ["tcp:1"]\ndata_dir = "/nope"\n')
        options = Options()
        options.parseOptions(
            ["--config", path, "--listen", "tcp:0", "--listen", "tcp:0:interface=::1", "--data-dir", "d"]
        )
        server = options["config_obj"].server
        self.assertEqual(server.listen, ("tcp:0", "tcp:0:interface=::1"))
        self.assertEqual(server.data_dir, "d")

    def test_no_config_file_means_defaults(self):
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["config_obj"], Config())

    def test_bad_config_exits_with_one_line(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[broker]\nmax_packet_size = 1\n")
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", path])
        self.assertEqual(
            str(caught.exception),
            "mqttd: configuration error: broker.max_packet_size: must be 64..268435460, got 1",
        )


class GarbageCollectorTests(unittest.TestCase):
    def test_tune_gc_raises_thresholds_and_freezes_once_running(self):
        """The measured values (mqttd/tap.py), and what they are for: 10,000 new tracked
        objects, which Python's default threshold (700) collects 14 times, start no
        collection at all."""
        import gc

        from twisted.internet.testing import MemoryReactor

        from mqttd.tap import tune_gc

        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        self.addCleanup(gc.unfreeze)
        reactor = MemoryReactor()
        tune_gc(reactor)
        self.assertEqual(gc.get_threshold(), (20_000, 20, 20))
        self.assertEqual([hook[0] for hook in reactor.whenRunningHooks], [gc.freeze])

        collections = []

        def count(phase, info):
            if phase == "start":
                collections.append(info["generation"])

        self.assertTrue(gc.isenabled())  # or no threshold would start a collection
        gc.collect()  # young-generation count back to 0
        gc.callbacks.append(count)
        try:
            kept = [[] for _ in range(10_000)]
        finally:
            gc.callbacks.remove(count)
        self.assertEqual((len(kept), collections), (10_000, []))
