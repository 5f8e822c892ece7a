"""The checks' wiring: the canary's user and ACL rule in the config, a broker's gaps
through its submit, and what report() reads (alerts, gaps, canary status) from one
place, in the single process too."""
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.broker.acl import AclRules
from mqttd.config import parse_config
from mqttd.errors import ConfigError
from mqttd.manage.canary import CANARY_CLIENT_ID, CANARY_TOPIC, CANARY_USERNAME
from mqttd.manage.gaps import MIN_SAMPLES
from mqttd.manage.tree_metrics import TreeMetrics, snapshot
from mqttd.manage.watch import Watch, keeping_canary, watch_broker, with_canary
from mqttd.metrics import Metrics
from mqttd.store.sink import Message


def _config(url="", **manage):
    """``url``: webhook.url (no rows in this data dir: the canary checks PUBACKs only)."""
    return parse_config({"server": {"workers": 0}, "manage": manage, "webhook": {"url": url},
                         "auth": {"acl_no_match": "deny",
                                  "users": [{"username": "u", "password": "p"}]}})


class WithCanaryTests(unittest.TestCase):
    def test_off_leaves_the_config_alone(self):
        config = _config()
        self.assertIs(with_canary(config), config)

    def test_on_adds_its_user_with_a_fresh_password_and_lets_it_publish_its_topic(self):
        config = with_canary(_config(canary_interval=60.0))
        (user,) = [u for u in config.auth.users if u.username == CANARY_USERNAME]
        self.assertGreaterEqual(len(user.password), 16)
        self.assertNotEqual(user.password, with_canary(_config(canary_interval=60.0))
                            .auth.users[-1].password)
        rules = AclRules(config.auth.acl, config.auth.acl_no_match)
        acl = rules.for_client(CANARY_CLIENT_ID, CANARY_USERNAME, None)
        self.assertTrue(acl.may_publish(CANARY_TOPIC))  # past acl_no_match = "deny"
        self.assertFalse(acl.may_publish("other"))
        # The children validate it again: it must still be a valid configuration.
        from mqttd.config import config_document
        self.assertEqual(parse_config(config_document(config)).auth, config.auth)

    def test_an_operators_user_of_that_name_is_refused(self):
        config = parse_config({"manage": {"canary_interval": 60.0}, "auth": {
            "users": [{"username": CANARY_USERNAME, "password": "x"}]}})
        with self.assertRaises(ConfigError) as caught:
            with_canary(config)
        self.assertIn("auth.users[0].username", str(caught.exception))

    def test_it_is_idempotent_and_a_sighup_reload_keeps_the_running_canary(self):
        from mqttd.config import load_config
        from mqttd.reload import changed_keys
        config = with_canary(_config(canary_interval=60.0))
        self.assertIs(with_canary(config), config)  # the roles apply it again
        path = self.mktemp()
        with open(path, "w") as f:  # the file as an operator edits it: no canary in it
            f.write('[server]\nworkers = 0\n[manage]\ncanary_interval = 0.0\n'
                    '[auth]\nacl_no_match = "deny"\n'
                    '[[auth.users]]\nusername = "u"\npassword = "other"\n')
        reloaded = keeping_canary(load_config, config)(path)
        canary = [u for u in reloaded.auth.users if u.username == CANARY_USERNAME]
        self.assertEqual(canary, [u for u in config.auth.users if u.username == CANARY_USERNAME])
        self.assertEqual(reloaded.auth.acl, config.auth.acl)
        # Only the operator's own change is a change: the gate kicks nobody else.
        self.assertEqual([k for k in changed_keys(config, reloaded) if k.startswith("auth.")],
                         ["auth.users"])
        self.assertEqual([u.password for u in reloaded.auth.users if u.username == "u"],
                         ["other"])
        off = _config()
        self.assertIs(keeping_canary(load_config, off), load_config)

    def test_an_interval_below_a_second_is_refused(self):
        with self.assertRaises(ConfigError) as caught:
            _config(canary_interval=0.5)
        self.assertIn("manage.canary_interval", str(caught.exception))


class _Broker:
    def __init__(self):
        self.metrics = Metrics()
        self.submitted = []
        self.submit = lambda message, notify, token: self.submitted.append(message)


class WatchTests(unittest.TestCase):
    def test_a_brokers_gaps_and_the_workers_merge_into_one_list(self):
        clock = Clock()
        config = _config(gap_factor=2.0)
        broker = _Broker()
        gaps = watch_broker(config, clock, broker, "mqttd")
        for _ in range(MIN_SAMPLES + 1):
            broker.submit(Message("k", "dev-1", None, "t", b"", 1, False, clock.seconds()),
                          None, None)
            clock.advance(5.0)
        self.assertEqual(len(broker.submitted), MIN_SAMPLES + 1)  # passed on
        clock.advance(6.0)
        tree = TreeMetrics(clock, Metrics(), "mqttd")
        tree.report("mqttd-worker-1", snapshot(Metrics(), "a", {"gaps": [
            {"client_id": "far", "account": None, "last_seen": 1.0}]}))
        watch = Watch(clock, config, tree, Metrics(), local_gaps=gaps)
        watch.evaluate()
        self.assertEqual([g["client_id"] for g in watch.gaps()], ["dev-1", "far"])
        self.assertIsNone(watch_broker(_config(gap_factor=0.0), clock, broker, "mqttd"))

    def test_alerts_list_the_guardrails_and_a_failing_canary(self):
        clock = MemoryReactorClock()
        config = with_canary(_config(url="http://127.0.0.1:9/v1/messages",
                                     canary_interval=5.0))
        tree = TreeMetrics(clock, Metrics(), "mqttd")
        watch = Watch(clock, config, tree, tree_metrics_own := Metrics(),
                      listeners=lambda: (), ready=lambda: True)
        watch.startService()
        self.addCleanup(watch.stopService)
        self.assertEqual(watch.alerts(), [])
        self.assertEqual(watch.canary_status()["state"], "waiting")
        clock.advance(5.0)  # no listener bound: unreachable
        clock.advance(5.0)
        (alert,) = watch.alerts()
        self.assertEqual((alert["name"], alert["process"]), ("canary", "mqttd"))
        self.assertIn("last unreachable", alert["message"])
        self.assertEqual(tree_metrics_own.manage_canary_failing, 1)
        self.assertEqual(Watch(clock, _config(), tree, Metrics()).canary_status(),
                         {"enabled": False})


class SingleProcessTests(unittest.TestCase):
    def test_the_single_process_has_its_watch_and_its_broker_is_watched(self):
        from mqttd.service import build_service
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp()},
                               "manage": {"canary_interval": 30.0}})
        root = build_service(config, MemoryReactorClock())
        self.assertEqual(root.watch.canary_status()["row_check"], True)
        self.assertEqual(root.watch.gaps(), [])
        self.assertEqual(root.tree_metrics.name, "mqttd")
