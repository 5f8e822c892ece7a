"""Static ACL rules (mqttd.broker.acl): who a rule is for, first match wins, %c / %u,
and the two readings of a subscription (an allow rule must cover it, a deny rule only
overlap it); then the rules in the broker: a denied publish closes without an ack, a
denied subscription gets 0x80."""
import json

from twisted.trial.unittest import TestCase

from mqttd.broker.acl import AclRules, covers, overlaps
from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec import Puback, Suback, Subscribe
from mqttd.config import AuthConfig, ConfigError, User, config_document, parse_config
from mqttd.config_sections import AclRule
from tests.support.broker import Harness, pub, publishes


def levels(text):
    return text.split("/")


def rule(topic, permission="allow", action="all", **who):
    if not who:
        who = {"all": True}
    return AclRule(topic=topic, action=action, permission=permission, **who)


class FilterRelationTests(TestCase):
    def test_overlaps_is_matching_for_a_topic(self):
        for f, t, want in (("a/+", "a/b", True), ("a/#", "a", True), ("a/#", "a/b/c", True),
                           ("#", "$SYS/x", False), ("+/x", "$SYS/x", False),
                           ("$SYS/#", "$SYS/x", True), ("a/b", "a/c", False),
                           ("a/+", "a/b/c", False), ("/v1.6/+", "/v1.6/x", True)):
            self.assertEqual(overlaps(levels(f), levels(t)), want, (f, t))

    def test_overlaps_between_filters(self):
        for a, b, want in (("a/secret", "a/#", True), ("a/+/c", "a/b/+", True),
                           ("a/+", "a/b/c", False), ("#", "$SYS/#", False),
                           ("+/#", "$x", False), ("a/b", "+/+", True), ("a/b", "a/c/#", False)):
            self.assertEqual(overlaps(levels(a), levels(b)), want, (a, b))
            self.assertEqual(overlaps(levels(b), levels(a)), want, (b, a))

    def test_covers(self):
        for r, s, want in (("a/#", "a/b/+", True), ("a/+", "a/#", False), ("a/#", "a", True),
                           ("a/#", "a/#", True), ("#", "a/#", True), ("#", "$SYS/#", False),
                           ("+/+", "a/+", True), ("a/+", "+/b", False), ("a/b", "a/b", True),
                           ("a/b/#", "a", False), ("+", "$SYS", False),
                           ("$SYS/#", "$SYS/+", True)):
            self.assertEqual(covers(levels(r), levels(s)), want, (r, s))


class RuleTests(TestCase):
    def test_first_match_wins(self):
        rules = AclRules([rule("a/secret", "deny"), rule("a/#"), rule("#", "deny")])
        acl = rules.for_client("c", "u", None)
        self.assertFalse(acl.may_publish("a/secret"))
        self.assertTrue(acl.may_publish("a/open"))
        self.assertFalse(acl.may_publish("b"))

    def test_a_subscription_is_allowed_only_when_an_allow_rule_covers_it(self):
        acl = AclRules([rule("a/+"), rule("#", "deny")]).for_client("c", None, None)
        self.assertTrue(acl.may_subscribe("a/b"))
        self.assertTrue(acl.may_subscribe("a/+"))
        self.assertFalse(acl.may_subscribe("a/#"))  # also matches a/b/c: not covered

    def test_a_deny_rule_applies_to_any_subscription_that_overlaps_it(self):
        acl = AclRules([rule("a/secret", "deny"), rule("#")]).for_client("c", None, None)
        self.assertFalse(acl.may_subscribe("a/#"))
        self.assertFalse(acl.may_subscribe("+/secret"))
        self.assertTrue(acl.may_subscribe("a/open"))
        self.assertTrue(acl.may_publish("a/open"))

    def test_no_match_decides_what_no_rule_does(self):
        self.assertIsNone(AclRules([]).for_client("c", "u", None))  # nothing to check
        deny = AclRules([rule("ok")], "deny").for_client("c", "u", None)
        self.assertTrue(deny.may_publish("ok"))
        self.assertFalse(deny.may_publish("other"))
        self.assertFalse(AclRules([], "deny").for_client("c", "u", None).may_subscribe("#"))

    def test_actions(self):
        acl = AclRules([rule("up", action="publish"), rule("down", action="subscribe")],
                       "deny").for_client("c", None, None)
        self.assertEqual((acl.may_publish("up"), acl.may_subscribe("up")), (True, False))
        self.assertEqual((acl.may_publish("down"), acl.may_subscribe("down")), (False, True))

    def test_who_a_rule_is_for(self):
        rules = AclRules([rule("u", user="alice"), rule("acc", account="acme"),
                          rule("anon", anonymous=True)], "deny")
        alice = rules.for_client("c", "alice", None)
        self.assertEqual([alice.may_publish(t) for t in ("u", "acc", "anon")],
                         [True, False, False])
        acme = rules.for_client("c", "bob", "acme")
        self.assertEqual([acme.may_publish(t) for t in ("u", "acc", "anon")],
                         [False, True, False])
        anonymous = rules.for_client("c", None, None)
        self.assertEqual([anonymous.may_publish(t) for t in ("u", "acc", "anon")],
                         [False, False, True])

    def test_client_id_and_username_are_substituted(self):
        rules = AclRules([rule("devices/%c/#"), rule("users/%u/in", action="subscribe")],
                         "deny")
        acl = rules.for_client("truck-1", "bob", None)
        self.assertTrue(acl.may_publish("devices/truck-1/speed"))
        self.assertFalse(acl.may_publish("devices/truck-2/speed"))
        self.assertTrue(acl.may_subscribe("users/bob/in"))
        self.assertFalse(acl.may_subscribe("users/alice/in"))

    def test_a_name_that_would_widen_the_rule_does_not_get_it(self):
        rules = AclRules([rule("devices/%c/#"), rule("users/%u")], "deny")
        for client_id, username in (("+", None), ("#", "a/b"), ("a/b", "+")):
            acl = rules.for_client(client_id, username, None)
            self.assertFalse(acl.may_publish(f"devices/{client_id}/x"))
            self.assertFalse(acl.may_publish("devices/x/y"))
            self.assertFalse(acl.may_publish("users/x"))
        # Anonymous: a %u rule is not for it.
        self.assertFalse(rules.for_client("c", None, None).may_publish("users/None"))


class ConfigTests(TestCase):
    def parse(self, *rules, **auth):
        return parse_config({"auth": dict(auth, acl=list(rules))})

    def test_a_rule_is_read_and_round_trips(self):
        config = self.parse({"user": "alice", "topic": "a/#", "action": "publish",
                             "permission": "deny"}, acl_no_match="deny")
        self.assertEqual(config.auth.acl, (AclRule(user="alice", topic="a/#",
                                                   action="publish", permission="deny"),))
        self.assertEqual(config.auth.acl_no_match, "deny")
        # As the master hands a child its configuration (JSON of the document):
        self.assertEqual(parse_config(json.loads(json.dumps(config_document(config)))),
                         config)

    def test_bad_rules_stop_start_up_naming_the_key(self):
        ok = {"all": True, "topic": "t", "permission": "allow"}
        for bad, message in (
                ({"topic": "t", "permission": "allow"}, "auth.acl[1]: must name exactly one"),
                (dict(ok, user="u"), "auth.acl[1]: must name exactly one"),
                (dict(ok, topic=""), "auth.acl[1].topic: must be a topic filter"),
                (dict(ok, topic="a/#/b"), "auth.acl[1].topic: '#' must be"),
                (dict(ok, topic="a+"), "auth.acl[1].topic: '+' must be"),
                ({"all": True, "topic": "t"}, "auth.acl[1].permission: required"),
                (dict(ok, permission="maybe"), "auth.acl[1].permission: must be one of"),
                (dict(ok, action="read"), "auth.acl[1].action: must be one of"),
                ({"account": "bad name", "topic": "t", "permission": "allow"},
                 "auth.acl[1].account: must match"),
                (dict(ok, what=1), "auth.acl[1].what: unknown key")):
            with self.assertRaises(ConfigError) as e:
                self.parse(ok, bad)
            self.assertIn(message, str(e.exception))
        with self.assertRaises(ConfigError) as e:
            self.parse(acl_no_match="sometimes")
        self.assertIn("auth.acl_no_match: must be one of", str(e.exception))

    def test_a_users_account_is_checked(self):
        config = parse_config({"auth": {"users": [
            {"username": "u", "password": "p", "account": "acme.eu-1"}]}})
        self.assertEqual(config.auth.users[0].account, "acme.eu-1")
        self.assertEqual(parse_config(config_document(config)), config)
        for bad in ("", "-acme", "a/b", "x" * 65, "é"):
            if not bad:
                continue  # "" is no account
            with self.assertRaises(ConfigError) as e:
                parse_config({"auth": {"users": [
                    {"username": "u", "password": "p", "account": bad}]}})
            self.assertIn("auth.users[0].account: must match", str(e.exception))


class BrokerAclTests(TestCase):
    def setUp(self):
        users = (User("alice", "pw"), User("acme-1", "pw", "acme"))
        self.h = Harness(
            authenticator=StaticAuthenticator(AuthConfig(allow_anonymous=True, users=users)),
            acl=AclRules([rule("devices/%c/#"), rule("alerts/#", action="subscribe"),
                          rule("/v1.6/devices/#", account="acme"),
                          rule("#", "deny")]))

    def client(self, client_id, username=None):
        c = self.h.client()
        c.connect(client_id, username=username,
                  password=None if username is None else b"pw")
        return c

    def test_a_denied_publish_closes_without_ack(self):
        c = self.client("truck-1", "alice")
        c.send(pub("devices/truck-1/speed", b"1", qos=1, pid=1),
               pub("devices/truck-2/speed", b"2", qos=1, pid=2))
        self.assertEqual(c.received(), [Puback(1)])
        self.assertTrue(c.closed)
        self.assertEqual([m.topic for m in self.h.store.messages], ["devices/truck-1/speed"])
        self.assertEqual(self.h.broker.metrics.mqtt_acl_denied["publish"], 1)

    def test_a_denied_subscription_gets_0x80_and_the_rest_are_granted(self):
        c = self.client("truck-1", "alice")
        c.send(Subscribe(1, (("alerts/#", 1), ("devices/#", 0), ("devices/truck-1/#", 0))))
        self.assertEqual(c.received(), [Suback(1, (1, 0x80, 0))])
        self.assertEqual(self.h.broker.metrics.mqtt_acl_denied["subscribe"], 1)
        other = self.client("truck-2", "alice")
        other.send(pub("devices/truck-2/x", b"not for truck-1"))
        self.assertEqual(publishes(c.received()), [])

    def test_an_accounts_rules_judge_its_own_topics(self):
        c = self.client("dev", "acme-1")
        c.send(Subscribe(1, (("/v1.6/devices/#", 0), ("devices/dev/#", 0))))
        # The account's rule and the all rule (%c) both read the client's own view.
        self.assertEqual(c.received(), [Suback(1, (0, 0))])
        c.send(pub("/v1.6/devices/dev", b"1"))
        self.assertEqual([(p.topic, p.payload) for p in publishes(c.received())],
                         [("/v1.6/devices/dev", b"1")])
        c.send(pub("elsewhere", b"x"))
        self.assertTrue(c.closed)
        self.assertEqual(self.h.broker.metrics.mqtt_acl_denied["publish"], 1)
