"""Subscription interest between workers: a worker announces a filter's first subscriber
and its last one only; the master's table applies deltas and resets and drops a slot;
the remote index matches topics to slots with the broker's own rules, ``$`` included;
a snapshot is cut into bounded messages."""
import json

from twisted.trial import unittest

from mqttd.tree.interest import (
    AnnouncingTrie, InterestTable, MalformedInterest, RemoteInterest, snapshot,
)


class AnnouncingTrieTests(unittest.TestCase):
    def setUp(self):
        self.changes = []
        self.trie = AnnouncingTrie(lambda f, present: self.changes.append((f, present)))

    def test_first_and_last_subscriber_only(self):
        trie = self.trie
        trie.subscribe("a/+", "s1", 1)
        trie.subscribe("a/+", "s2", 0)
        trie.subscribe("a/+", "s1", 2)  # a QoS change, no new subscriber
        trie.subscribe("b", "s1", 0)
        self.assertEqual(self.changes, [("a/+", True), ("b", True)])
        trie.unsubscribe("a/+", "s1")
        trie.unsubscribe("a/+", "s1")  # not subscribed any more: nothing
        trie.unsubscribe("c", "s1")
        self.assertEqual(self.changes[2:], [])
        trie.unsubscribe("a/+", "s2")
        self.assertEqual(self.changes[2:], [("a/+", False)])
        self.assertEqual(trie.filters(), ["b"])

    def test_ten_thousand_subscribers_of_one_filter_are_one_announcement(self):
        for n in range(10_000):
            self.trie.subscribe("cmd/all", n, 1)
        self.assertEqual(self.changes, [("cmd/all", True)])

    def test_remove_subscriber_announces_what_it_empties(self):
        trie = self.trie
        trie.subscribe("x/#", "s1", 0)
        trie.subscribe("y", "s1", 0)
        trie.subscribe("y", "s2", 0)
        trie.remove_subscriber("s1", ["x/#", "y"])
        self.assertEqual(self.changes[2:], [("x/#", False)])
        self.assertEqual(sorted(trie.filters()), ["y"])

    def test_matching_is_the_broker_trie_s(self):
        trie = self.trie
        trie.subscribe("#", "s1", 1)
        trie.subscribe("$SYS/#", "s2", 0)
        self.assertEqual(trie.match("a/b"), {"s1": 1})
        self.assertEqual(trie.match("$SYS/load"), {"s2": 0})


class InterestTableTests(unittest.TestCase):
    def test_deltas_resets_and_drop(self):
        table = InterestTable()
        self.assertEqual(table.apply(1, {"add": ["a", "b", "a"]}), (False, ["a", "b"], []))
        self.assertEqual(table.apply(1, {"add": ["b", "c"], "remove": ["a", "z"]}),
                         (False, ["c"], ["a"]))
        self.assertEqual(sorted(table.filters(1)), ["b", "c"])
        self.assertEqual(table.apply(1, {"reset": True, "add": ["d"]}), (True, ["d"], []))
        self.assertEqual(table.filters(1), ["d"])
        table.apply(2, {"add": ["e"]})
        self.assertEqual(table.slots(), [1, 2])
        self.assertEqual(table.drop(1), 1)
        self.assertEqual((table.slots(), table.drop(1)), ([2], 0))

    def test_malformed_messages_change_nothing(self):
        table = InterestTable()
        table.apply(1, {"add": ["a"]})
        for payload in ({"add": "a/#"}, {"add": [1]}, {"remove": [""]}, {"reset": "yes"},
                        {"add": [None]}):
            with self.assertRaises(MalformedInterest, msg=payload):
                table.apply(1, payload)
        self.assertEqual(table.filters(1), ["a"])


class RemoteInterestTests(unittest.TestCase):
    def test_topics_match_the_slots_whose_filters_match(self):
        remote = RemoteInterest()
        self.assertEqual((len(remote), remote.match("a/b")), (0, {}))
        remote.apply(2, {"add": ["a/+", "#"]})
        remote.apply(3, {"add": ["a/b", "$SYS/#"]})
        self.assertEqual(set(remote.match("a/b")), {2, 3})
        self.assertEqual(set(remote.match("a/c")), {2})
        self.assertEqual(set(remote.match("z")), {2})
        remote.apply(2, {"remove": ["#"]})
        self.assertEqual(remote.match("z"), {})
        self.assertEqual(remote.drop(3), 2)
        self.assertEqual(set(remote.match("a/b")), {2})
        remote.apply(2, {"reset": True})
        self.assertEqual((len(remote), remote.match("a/b")), (0, {}))

    def test_dollar_topics_are_not_matched_by_a_first_level_wildcard(self):
        remote = RemoteInterest()  # [MQTT-4.7.2-1]
        remote.apply(2, {"add": ["#", "+/load", "+/+"]})
        self.assertEqual(remote.match("$SYS/load"), {})
        remote.apply(3, {"add": ["$SYS/+"]})
        self.assertEqual(set(remote.match("$SYS/load")), {3})


class SnapshotTests(unittest.TestCase):
    def test_an_empty_set_is_one_reset(self):
        self.assertEqual(snapshot([], slot=2),
                         [{"slot": 2, "reset": True, "add": [], "remove": []}])

    def test_a_big_set_is_cut_into_bounded_messages_that_add_up(self):
        filters = [f"dev/{n:06d}/\u00e9" * 40 for n in range(3000)]
        messages = snapshot(filters)
        self.assertGreater(len(messages), 1)
        self.assertEqual([m["reset"] for m in messages], [True] + [False] * (len(messages) - 1))
        self.assertEqual([f for m in messages for f in m["add"]], filters)
        for message in messages:
            self.assertLessEqual(len(json.dumps(message)), 1 << 20)
        table = InterestTable()
        for message in messages:
            table.apply(1, message)
        self.assertEqual(sorted(table.filters(1)), sorted(filters))
