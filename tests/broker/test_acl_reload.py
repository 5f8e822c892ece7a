"""New ACL rules (SIGHUP, ``Tenancy.reload``) judge every connection from its next
PUBLISH and SUBSCRIBE on, the live ones too (one with no rules before as well as one
whose rules change), while what was granted before stays; a connection that is gone is
not held for it."""
import gc

from twisted.trial.unittest import TestCase

from mqttd.broker.acl import AclRules
from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec import Puback, Suback, Subscribe
from mqttd.config import AuthConfig, User
from mqttd.config_sections import AclRule
from tests.support.broker import Harness, pub, publishes
from tests.support.logs import capture_logs


def rule(topic, permission="allow", action="all", **who):
    return AclRule(topic=topic, action=action, permission=permission, **(who or {"all": True}))


class AclReloadTests(TestCase):
    def setUp(self):
        users = (User("alice", "pw"), User("acme-1", "pw", "acme"))
        self.h = Harness(
            authenticator=StaticAuthenticator(AuthConfig(allow_anonymous=True, users=users)),
            acl=AclRules([]))
        self.tenancy = self.h.broker.tenancy
        self.events = capture_logs(self)

    def client(self, client_id, username=None):
        """A connected client: anonymous, or a user with its password."""
        return self.h.client(client_id, username=username, password=username and b"pw")

    def test_a_deny_reaches_a_live_connection_at_its_next_publish(self):
        c = self.client("truck-1", "alice")
        c.send(pub("secret/x", b"1", qos=1, pid=1))
        self.assertEqual(c.received(), [Puback(1)])
        self.assertEqual(self.tenancy.reload(AclRules([rule("secret/#", "deny")])), 1)
        c.send(pub("open/x", b"2", qos=1, pid=2), pub("secret/x", b"3", qos=1, pid=3))
        self.assertEqual(c.received(), [Puback(2)])
        self.assertTrue(c.closed)
        self.assertEqual([m.payload for m in self.h.store.messages], [b"1", b"2"])
        self.assertEqual(self.h.broker.metrics.mqtt_acl_denied["publish"], 1)
        self.assertEqual(self.h.broker.metrics.mqtt_acl_reloads, 1)
        self.assertEqual(len([e for e in self.events
                              if "ACL reloaded" in e.get("log_format", "")]), 1)

    def test_a_subscription_is_judged_by_the_new_rules_and_one_granted_before_stays(self):
        sub = self.client("sub", "alice")
        sub.send(Subscribe(1, (("alerts/#", 0),)))
        self.assertEqual(sub.received(), [Suback(1, (0,))])
        self.tenancy.reload(AclRules([rule("alerts/#", "deny", action="subscribe")]))
        sub.send(Subscribe(2, (("alerts/x", 0), ("news/#", 0))))
        self.assertEqual(sub.received(), [Suback(2, (0x80, 0))])
        self.client("pub", "alice").send(pub("alerts/fire", b"!"))
        self.assertEqual([p.topic for p in publishes(sub.received())], ["alerts/fire"])

    def test_rules_lifted_let_a_live_connection_do_what_they_denied(self):
        self.tenancy.reload(AclRules([rule("secret/#", "deny")]))
        c = self.client("dev", "acme-1")
        self.tenancy.reload(AclRules([], "allow"))
        c.send(pub("secret/x", b"1", qos=1, pid=1))
        self.assertEqual(c.received(), [Puback(1)])
        self.assertFalse(c.closed)
        self.assertEqual(self.h.store.messages[0].topic, "$a/acme/secret/x")  # still mounted

    def test_rules_for_one_user_reach_only_its_connections(self):
        alice, bob = self.client("a", "alice"), self.client("b")
        self.tenancy.reload(AclRules([rule("x", "deny", user="alice")]))
        bob.send(pub("x", b"anonymous", qos=1, pid=1))
        self.assertEqual(bob.received(), [Puback(1)])
        alice.send(pub("x", b"alice", qos=1, pid=1))
        self.assertTrue(alice.closed)

    def test_a_closed_connection_is_not_kept_for_a_reload(self):
        c = self.client("gone", "alice")
        c.disconnect()
        del c
        gc.collect()
        self.assertEqual(self.tenancy.reload(AclRules([rule("#", "deny")])), 0)
