"""Tests for mqttd.broker.topics: MQTT 3.1.1 section 4.7 wildcard semantics,
max-QoS merging, unsubscribe pruning, and scale."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import TestCase

from mqttd.broker.topics import SubscriptionTrie
from tests.support.topics import SPEC_CASES, reference_match


class ReferenceTests(TestCase):
    def test_oracle_agrees_with_spec_table(self):
        """The oracle used by the property tests is itself right."""
        for f, t, expected in SPEC_CASES:
            self.assertEqual(reference_match(f, t), expected, (f, t))


class WildcardTests(TestCase):
    def test_spec_examples_one_at_a_time(self):
        for f, t, expected in SPEC_CASES:
            trie = SubscriptionTrie()
            trie.subscribe(f, "s", 1)
            got = trie.match(t)
            self.assertEqual(got, {"s": 1} if expected else {}, (f, t))

    def test_spec_examples_all_at_once(self):
        """Every filter subscribed together; each topic reaches exactly its filters."""
        trie = SubscriptionTrie()
        filters = sorted({f for f, _, _ in SPEC_CASES})
        for f in filters:
            trie.subscribe(f, f, 0)
        for _, t, _ in SPEC_CASES:
            expected = {f: 0 for f in filters if reference_match(f, t)}
            self.assertEqual(trie.match(t), expected, t)

    def test_deep_topic_does_not_recurse(self):
        depth = 20000
        topic = "/".join(["x"] * depth)
        trie = SubscriptionTrie()
        trie.subscribe("/".join(["+"] * depth), "plus", 0)
        trie.subscribe("/".join(["x"] * (depth - 1)) + "/#", "hash", 1)
        self.assertEqual(trie.match(topic), {"plus": 0, "hash": 1})
        self.assertTrue(trie.unsubscribe("/".join(["+"] * depth), "plus"))
        self.assertTrue(trie.unsubscribe("/".join(["x"] * (depth - 1)) + "/#", "hash"))
        self.assertEqual(trie.node_count(), 0)


class QosTests(TestCase):
    def test_overlapping_subscriptions_give_max_qos_once(self):
        trie = SubscriptionTrie()
        trie.subscribe("a/b", "A", 1)
        trie.subscribe("a/+", "A", 0)
        trie.subscribe("a/#", "A", 2)
        trie.subscribe("#", "A", 0)
        trie.subscribe("a/+", "B", 1)
        trie.subscribe("+/b", "B", 0)
        self.assertEqual(trie.match("a/b"), {"A": 2, "B": 1})
        self.assertEqual(trie.match("a/c"), {"A": 2, "B": 1})
        self.assertEqual(trie.match("x/b"), {"A": 0, "B": 0})
        trie.unsubscribe("a/#", "A")
        self.assertEqual(trie.match("a/b"), {"A": 1, "B": 1})
        trie.unsubscribe("a/b", "A")
        self.assertEqual(trie.match("a/b"), {"A": 0, "B": 1})

    def test_exact_qos_lower_than_wildcard(self):
        """The exact entry is copied first; a higher wildcard QoS must still win."""
        trie = SubscriptionTrie()
        trie.subscribe("t", "A", 0)
        trie.subscribe("+", "A", 2)
        self.assertEqual(trie.match("t"), {"A": 2})

    def test_resubscribe_replaces_qos(self):
        trie = SubscriptionTrie()
        self.assertTrue(trie.subscribe("a/b", "A", 0))
        self.assertFalse(trie.subscribe("a/b", "A", 2))
        self.assertTrue(trie.subscribe("a/+", "A", 1))
        self.assertFalse(trie.subscribe("a/+", "A", 0))
        self.assertTrue(trie.subscribe("a/b", "B", 1))
        self.assertEqual(len(trie), 3)
        self.assertEqual(trie.match("a/b"), {"A": 2, "B": 1})
        self.assertEqual(trie.match("a/c"), {"A": 0})

    def test_result_is_a_fresh_dict(self):
        trie = SubscriptionTrie()
        self.assertEqual(trie.match("a"), {})
        trie.match("a")["x"] = 1
        self.assertEqual(trie.match("a"), {})
        trie.subscribe("a", "A", 1)
        trie.match("a")["B"] = 2
        self.assertEqual(trie.match("a"), {"A": 1})
        trie.subscribe("+", "C", 1)
        trie.match("a")["B"] = 2
        self.assertEqual(trie.match("a"), {"A": 1, "C": 1})


class UnsubscribeTests(TestCase):
    def test_unsubscribe_and_prune(self):
        trie = SubscriptionTrie()
        filters = ["a/b/c", "a/+/c", "a/#", "#", "+", "+/+", "a//b", "/", "$SYS/#",
                   "a/b/c/d/e/f/#", "sport/tennis/+"]
        for i, f in enumerate(filters):
            trie.subscribe(f, "A", i % 3)
            trie.subscribe(f, "B", 0)
        self.assertEqual(len(trie), 2 * len(filters))
        self.assertGreater(trie.node_count(), 0)
        for f in filters:
            self.assertTrue(trie.unsubscribe(f, "A"))
            self.assertFalse(trie.unsubscribe(f, "A"))
        self.assertEqual(len(trie), len(filters))
        self.assertEqual(trie.match("a/b/c"), {"B": 0})
        for f in reversed(filters):
            self.assertTrue(trie.unsubscribe(f, "B"))
        self.assertEqual(len(trie), 0)
        self.assertEqual(trie.node_count(), 0)
        self.assertEqual(trie.match("a/b/c"), {})

    def test_unsubscribe_unknown_creates_nothing(self):
        trie = SubscriptionTrie()
        trie.subscribe("a/+", "A", 1)
        before = trie.node_count()
        self.assertFalse(trie.unsubscribe("a/+/b", "A"))
        self.assertFalse(trie.unsubscribe("a/#", "A"))
        self.assertFalse(trie.unsubscribe("a/+", "B"))
        self.assertFalse(trie.unsubscribe("a/b", "A"))
        self.assertFalse(trie.unsubscribe("x/y/#", "A"))
        self.assertEqual(trie.node_count(), before)
        self.assertEqual(len(trie), 1)

    def test_prefix_and_parent_filters_are_independent(self):
        trie = SubscriptionTrie()
        trie.subscribe("a/+", "A", 0)
        trie.subscribe("a/+/b", "A", 1)
        trie.subscribe("a/#", "B", 2)
        trie.subscribe("a", "C", 0)
        self.assertTrue(trie.unsubscribe("a/+", "A"))
        self.assertEqual(trie.match("a/x/b"), {"A": 1, "B": 2})
        self.assertEqual(trie.match("a/x"), {"B": 2})
        self.assertTrue(trie.unsubscribe("a/#", "B"))
        self.assertEqual(trie.match("a"), {"C": 0})
        self.assertEqual(trie.match("a/x/b"), {"A": 1})

    def test_churn_does_not_grow(self):
        trie = SubscriptionTrie()
        trie.subscribe("keep/+", "K", 0)
        baseline = trie.node_count()
        for i in range(500):
            f = f"t/{i}/+/x/#" if i % 2 else f"t/{i}/y"
            trie.subscribe(f, i, 1)
            trie.unsubscribe(f, i)
        self.assertEqual(trie.node_count(), baseline)
        self.assertEqual(len(trie), 1)

    def test_remove_subscriber(self):
        trie = SubscriptionTrie()
        mine = ["a/b", "a/+", "#"]
        for f in mine:
            trie.subscribe(f, "A", 1)
        trie.subscribe("a/b", "B", 0)
        self.assertEqual(trie.remove_subscriber("A", mine + ["never"]), 3)
        self.assertEqual(trie.match("a/b"), {"B": 0})
        self.assertEqual(len(trie), 1)
        self.assertEqual(trie.remove_subscriber("B", ["a/b"]), 1)
        self.assertEqual(trie.node_count(), 0)


levels = st.sampled_from(["a", "b", "", "$x"])
topics = st.lists(levels, min_size=1, max_size=4).map("/".join)
filters = st.lists(st.sampled_from(["a", "b", "", "$x", "+"]), min_size=1, max_size=4).flatmap(
    lambda ls: st.sampled_from(["/".join(ls), "/".join(ls + ["#"]), "#"])
)


class PropertyTests(TestCase):
    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(
        subs=st.lists(st.tuples(filters, st.integers(0, 3), st.integers(0, 2)), max_size=12),
        drop=st.lists(st.integers(0, 11), max_size=6),
        probe=st.lists(topics, min_size=1, max_size=6),
    )
    def test_agrees_with_reference(self, subs, drop, probe):
        trie = SubscriptionTrie()
        model = {}
        for f, who, qos in subs:
            self.assertEqual(trie.subscribe(f, who, qos), (f, who) not in model)
            model[(f, who)] = qos
        for i in drop:
            if i < len(subs):
                f, who, _ = subs[i]
                self.assertEqual(trie.unsubscribe(f, who), model.pop((f, who), None) is not None)
        self.assertEqual(len(trie), len(model))
        for t in probe:
            expected = {}
            for (f, who), qos in model.items():
                if reference_match(f, t):
                    expected[who] = max(qos, expected.get(who, -1))
            self.assertEqual(trie.match(t), expected, t)
        for f, who in list(model):
            self.assertTrue(trie.unsubscribe(f, who))
        self.assertEqual(trie.node_count(), 0)


def _scale_filter(i):
    """Subscription i of the scale test: 90% exact, 5% '+', 5% '#', over 97 tenants."""
    tenant = i % 97
    if i % 10:
        return f"tenant/{tenant}/device/{i}/telemetry", 1
    if i % 20:
        return f"tenant/{tenant}/device/+/telemetry", 0
    return f"tenant/{tenant}/#", 2


class ScaleTests(TestCase):
    def test_100k_subscriptions(self):
        """Correctness at the benchmark's scale (no timing asserted)."""
        n = 100_000
        subs = [_scale_filter(i) for i in range(n)]
        trie = SubscriptionTrie()
        for i, (f, qos) in enumerate(subs):
            self.assertTrue(trie.subscribe(f, i, qos))
        self.assertEqual(len(trie), n)
        for device in (12345, 10, 20, 99999):
            tenant = device % 97
            topic = f"tenant/{tenant}/device/{device}/telemetry"
            expected = {}
            if device % 10:
                expected[device] = 1
            for i in range(tenant, n, 97):
                if i % 10 == 0:
                    expected[i] = 0 if i % 20 else 2
            self.assertEqual(trie.match(topic), expected, topic)
            self.assertTrue(any(q == 0 for q in expected.values()))
            self.assertTrue(any(q == 2 for q in expected.values()))
        self.assertEqual(trie.match("tenant/5/device/6/status"), {
            i: 2 for i in range(5, n, 97) if i % 20 == 0})
        self.assertEqual(trie.match("other/topic"), {})
        for i, (f, _) in enumerate(subs):
            if "+" in f or "#" in f:
                self.assertTrue(trie.unsubscribe(f, i))
        self.assertEqual(trie.match("tenant/5/device/6/status"), {})
        self.assertEqual(trie.match("tenant/12/device/12/telemetry"), {12: 1})
        self.assertEqual(len(trie), n - n // 10)
        self.assertEqual(trie.node_count(), n - n // 10)  # exact entries only
