"""Which clients the trace follows: rules by client id, username (token prefix) and IP."""
from twisted.trial import unittest

from mqttd.manage.trace_match import TraceMatcher, from_payload, to_payload


class MatcherTests(unittest.TestCase):
    def test_nothing_matches_without_rules(self):
        matcher = TraceMatcher()
        self.assertFalse(matcher.matches("dev", "alice", "10.0.0.1"))
        self.assertEqual(len(matcher), 0)

    def test_each_kind(self):
        matcher = TraceMatcher([("client_id", "dev"), ("username", "alice"),
                                ("ip", "10.0.0.1"), ("ip", "2001:db8::/32")])
        self.assertTrue(matcher.matches("dev", None, None))
        self.assertTrue(matcher.matches("x", "alice", None))
        self.assertTrue(matcher.matches("x", None, "10.0.0.1"))
        self.assertTrue(matcher.matches("x", None, "2001:db8::7"))
        self.assertFalse(matcher.matches("x", "bob", "10.0.0.2"))
        self.assertFalse(matcher.matches("x", None, "not an address"))
        self.assertFalse(matcher.matches(None, None, None))

    def test_a_network_of_v4_does_not_match_v6(self):
        matcher = TraceMatcher([("ip", "10.0.0.0/8")])
        self.assertTrue(matcher.matches(None, None, "10.9.9.9"))
        self.assertFalse(matcher.matches(None, None, "::1"))

    def test_replace_says_whether_anything_changed(self):
        matcher = TraceMatcher([("client_id", "a")])
        self.assertFalse(matcher.replace([("client_id", "a")]))
        self.assertTrue(matcher.replace([("client_id", "b")]))
        self.assertFalse(matcher.matches("a", None, None))

    def test_the_channel_payload_round_trips_and_drops_junk(self):
        rules = [("ip", "10.0.0.1"), ("client_id", "dev")]
        self.assertEqual(sorted(from_payload(to_payload(rules))), sorted(rules))
        self.assertEqual(from_payload({"rules": [["a"], [1, 2], "x", ["ip", "1.2.3.4"]]}),
                         [("ip", "1.2.3.4")])
        self.assertEqual(from_payload({"rules": "no"}), [])
        self.assertEqual(from_payload(None), [])
