"""A worker's "acl" message from the master (SIGHUP's new rules): put in force in its
broker's tenancy; a message that is not one is logged and changes nothing."""
from types import SimpleNamespace

from twisted.trial import unittest

from mqttd.config import load_config
from mqttd.reload import ACL_MESSAGE, acl_payload
from mqttd.tree.worker import _Channel
from tests.support.logs import capture_logs


class WorkerAclMessageTests(unittest.TestCase):
    def setUp(self):
        self.reloaded = []
        tenancy = SimpleNamespace(reload=self.reloaded.append)
        factory = SimpleNamespace(broker=SimpleNamespace(tenancy=tenancy))
        self.channel = _Channel(None, None, factory)
        self.events = capture_logs(self)

    def message(self, payload):
        # What WorkerChannel calls for each control message the master sends.
        self.channel._message(ACL_MESSAGE, payload)

    def test_the_rules_go_to_the_broker(self):
        config = load_config(None, {"auth.acl": [
            {"all": True, "topic": "secret/#", "permission": "deny"}]})
        self.message(acl_payload(config.auth))
        (rules,) = self.reloaded
        self.assertFalse(rules.for_client("c", None, None).may_publish("secret/x"))

    def test_a_bad_message_is_logged_and_changes_nothing(self):
        for bad in ({}, {"rules": [{"topic": "x", "colour": "red"}], "no_match": "allow"},
                    {"rules": "all", "no_match": "deny"}):
            self.message(bad)
        self.assertEqual(self.reloaded, [])
        logged = [e for e in self.events if "ACL not reloaded" in e.get("log_format", "")]
        self.assertEqual(len(logged), 3)
