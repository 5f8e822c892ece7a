"""[manage]: where /metrics and /healthz listen, and whether it may face the network."""
import socket

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config
from mqttd.manage.http import ManageHTTP
from mqttd.manage.tree_metrics import TreeMetrics
from mqttd.metrics import Metrics


def _manage(**keys):
    return parse_config({"manage": keys}).manage


def _http(config):
    tree = TreeMetrics(Clock(), Metrics(), "mqttd")
    return ManageHTTP(reactor, config, tree.families, lambda: (True, "ok"))


class ManageConfigTests(unittest.TestCase):
    def test_default_is_a_fixed_loopback_port(self):
        config = parse_config({}).manage
        self.assertEqual(config.http_listen, "tcp:9883:interface=127.0.0.1")
        self.assertFalse(config.http_allow_remote)

    def test_empty_turns_it_off_and_types_are_checked(self):
        self.assertEqual(_manage(http_listen="").http_listen, "")
        with self.assertRaises(ConfigError) as caught:
            _manage(http_listen=9883)
        self.assertEqual(str(caught.exception), "manage.http_listen: must be a string, got 9883")
        with self.assertRaises(ConfigError) as caught:
            _manage(http_allow_remote="yes")
        self.assertIn("manage.http_allow_remote: must be true or false", str(caught.exception))

    def test_a_bad_endpoint_names_the_key(self):
        with self.assertRaises(ConfigError) as caught:
            _http(_manage(http_listen="nonsense:1"))
        self.assertIn("manage.http_listen: bad endpoint 'nonsense:1'", str(caught.exception))

    def test_a_non_loopback_address_stops_start_up_unless_allowed(self):
        service = _http(_manage(http_listen="tcp:0:interface=0.0.0.0"))
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.addCleanup(service.stopService)
        self.assertIn("manage.http_listen: listens on 0.0.0.0, not on a loopback address",
                      str(caught.exception))
        self.assertIn("manage.http_allow_remote = true", str(caught.exception))

    def test_allowed_it_binds_anywhere(self):
        service = _http(_manage(http_listen="tcp:0:interface=0.0.0.0", http_allow_remote=True))
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        self.assertEqual(service.port.getHost().host, "0.0.0.0")

    def test_loopback_binds_and_says_where(self):
        service = _http(_manage(http_listen="tcp:0:interface=127.0.0.1"))
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        address = service.port.getHost()
        with socket.create_connection((address.host, address.port), timeout=2):
            pass


class ManholeConfigTests(unittest.TestCase):
    def test_default_is_loopback_and_off_without_a_password_file(self):
        config = parse_config({}).manage
        self.assertEqual(config.manhole_listen, "tcp:9884:interface=127.0.0.1")
        self.assertEqual(config.manhole_password_file, "")

    def test_loopback_tcp_and_unix_are_accepted(self):
        for listen in ("tcp:9884:interface=127.0.0.1", "tcp:0:interface=127.0.0.5",
                       "tcp:9884:127.0.0.1", r"tcp6:9884:interface=\:\:1",
                       "unix:/run/mqttd/manhole.sock", ""):
            self.assertEqual(_manage(manhole_listen=listen).manhole_listen, listen)

    def test_anything_that_faces_the_network_stops_start_up(self):
        cases = {"tcp:9884": "listens on every interface",
                 "tcp:9884:interface=0.0.0.0": "0.0.0.0 is not a loopback address",
                 "tcp:9884:interface=192.0.2.1": "192.0.2.1 is not a loopback address",
                 r"tcp6:9884:interface=\:\:": ":: is not a loopback address",
                 "tcp:9884:interface=localhost": "'localhost' is not an IP address",
                 "ssl:9884:privateKey=k.pem": "must be tcp:PORT:interface=127.0.0.1 or unix",
                 "unix:": "needs a path"}
        for listen, why in cases.items():
            with self.assertRaises(ConfigError, msg=listen) as caught:
                _manage(manhole_listen=listen)
            self.assertTrue(str(caught.exception).startswith("manage.manhole_listen: "),
                            str(caught.exception))
            self.assertIn(why, str(caught.exception))


class ManholeBoundsConfigTests(unittest.TestCase):
    """The manhole's bounds as keys (their effect: tests/manage/test_manhole.py)."""

    def test_defaults(self):
        config = parse_config({}).manage
        self.assertEqual((config.manhole_max_sessions, config.manhole_login_timeout,
                          config.manhole_answer_wait, config.manhole_idle_timeout),
                         (16, 60.0, 30.0, 0.0))

    def test_values_within_bounds_are_kept(self):
        config = _manage(manhole_max_sessions=1, manhole_login_timeout=3600,
                         manhole_answer_wait=1.5, manhole_idle_timeout=10)
        self.assertEqual((config.manhole_max_sessions, config.manhole_login_timeout,
                          config.manhole_answer_wait, config.manhole_idle_timeout),
                         (1, 3600.0, 1.5, 10.0))

    def test_bad_values_name_the_key(self):
        cases = {
            ("manhole_max_sessions", 0): "manage.manhole_max_sessions: must be 1..1024, got 0",
            ("manhole_max_sessions", "3"):
                "manage.manhole_max_sessions: must be an integer, got '3'",
            ("manhole_login_timeout", 0.5):
                "manage.manhole_login_timeout: must be 1.0..3600.0, got 0.5",
            ("manhole_answer_wait", 7200):
                "manage.manhole_answer_wait: must be 1.0..3600.0, got 7200.0",
            ("manhole_idle_timeout", -1):
                "manage.manhole_idle_timeout: must be 0.0..86400.0, got -1.0",
            ("manhole_idle_timeout", 5):
                "manage.manhole_idle_timeout: must be 0 (no limit) or at least 10 s, got 5",
        }
        for (key, value), message in cases.items():
            with self.assertRaises(ConfigError, msg=key) as caught:
                _manage(**{key: value})
            self.assertEqual(str(caught.exception), message)
