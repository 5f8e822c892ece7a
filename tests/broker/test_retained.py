"""Tests for mqttd.broker.retained: set/replace/clear, wildcard lookup with the '$'
rule, empty levels, pruning."""

import attrs
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import TestCase

from mqttd.broker.retained import RetainedStore
from tests.support.topics import SPEC_CASES, reference_match


@attrs.frozen
class Msg:
    topic: str
    payload: bytes
    key: str = ""


def topics_of(messages):
    return sorted(m.topic for m in messages)


class SetClearTests(TestCase):
    def test_set_replace_get(self):
        store = RetainedStore()
        store.set("a/b", Msg("a/b", b"1"))
        store.set("a/b", Msg("a/b", b"2"))
        store.set("a", Msg("a", b"3"))
        self.assertEqual(len(store), 2)
        self.assertEqual(store.get("a/b").payload, b"2")
        self.assertEqual(store.get("a").payload, b"3")
        self.assertIsNone(store.get("a/b/c"))
        self.assertIsNone(store.get("x"))
        self.assertEqual([m.payload for m in store.match("a/b")], [b"2"])

    def test_empty_payload_clears(self):
        store = RetainedStore()
        store.set("a/b", Msg("a/b", b"1"))
        store.set("a/b", Msg("a/b", b""))
        self.assertEqual(len(store), 0)
        self.assertIsNone(store.get("a/b"))
        self.assertEqual(store.match("#"), [])
        self.assertEqual(store.node_count(), 0)
        store.set("never/set", Msg("never/set", b""))  # clearing nothing is fine
        self.assertEqual(len(store), 0)
        self.assertEqual(store.node_count(), 0)

    def test_clear(self):
        store = RetainedStore()
        store.set("a/b", Msg("a/b", b"1"))
        store.set("a", Msg("a", b"2"))
        self.assertFalse(store.clear("a/b/c"))
        self.assertFalse(store.clear("b"))
        self.assertTrue(store.clear("a"))
        self.assertFalse(store.clear("a"))
        self.assertEqual(topics_of(store.match("#")), ["a/b"])
        self.assertTrue(store.clear("a/b"))
        self.assertEqual(len(store), 0)
        self.assertEqual(store.node_count(), 0)

    def test_pruning_keeps_shared_prefixes(self):
        store = RetainedStore()
        for t in ("a/b/c/d", "a/b/x", "a//b", "/", "$SYS/x"):
            store.set(t, Msg(t, b"p"))
        store.clear("a/b/c/d")
        self.assertEqual(topics_of(store.match("a/#")), ["a//b", "a/b/x"])
        # a, a/b, a/b/x; a/, a//b; '', /; $SYS, $SYS/x
        self.assertEqual(store.node_count(), 9)
        for t in ("a/b/x", "a//b", "/", "$SYS/x"):
            self.assertTrue(store.clear(t))
        self.assertEqual(store.node_count(), 0)

    def test_churn_does_not_grow(self):
        store = RetainedStore()
        for i in range(300):
            t = f"dev/{i}/state/{i % 7}"
            store.set(t, Msg(t, b"on"))
            store.set(t, Msg(t, b""))
        self.assertEqual(store.node_count(), 0)

    def test_items(self):
        store = RetainedStore()
        topics = ["a", "a/b", "/x", "a//", "$SYS/q"]
        for t in topics:
            store.set(t, Msg(t, t.encode() or b"-"))
        self.assertEqual(sorted(t for t, _ in store.items()), sorted(topics))
        for t, m in store.items():
            self.assertEqual(m.topic, t)


class MatchTests(TestCase):
    def test_spec_examples_one_at_a_time(self):
        for f, t, expected in SPEC_CASES:
            if not t:
                continue  # a topic name is never empty [MQTT-4.7.3-1]
            store = RetainedStore()
            store.set(t, Msg(t, b"x"))
            self.assertEqual(topics_of(store.match(f)), [t] if expected else [], (f, t))

    def test_spec_examples_all_at_once(self):
        store = RetainedStore()
        topics = sorted({t for _, t, _ in SPEC_CASES if t})
        for t in topics:
            store.set(t, Msg(t, b"x"))
        for f, _, _ in SPEC_CASES:
            expected = [t for t in topics if reference_match(f, t)]
            self.assertEqual(topics_of(store.match(f)), expected, f)

    def test_dollar_topics(self):
        store = RetainedStore()
        for t in ("$SYS/broker/uptime", "$SYS", "$share", "app/$x", "app"):
            store.set(t, Msg(t, b"1"))
        self.assertEqual(topics_of(store.match("#")), ["app", "app/$x"])
        self.assertEqual(topics_of(store.match("+")), ["app"])
        self.assertEqual(topics_of(store.match("+/+")), ["app/$x"])
        self.assertEqual(topics_of(store.match("$SYS/#")), ["$SYS", "$SYS/broker/uptime"])
        self.assertEqual(topics_of(store.match("$SYS/+/uptime")), ["$SYS/broker/uptime"])
        self.assertEqual(topics_of(store.match("$share")), ["$share"])

    def test_empty_levels(self):
        store = RetainedStore()
        for t in ("a//b", "a/b", "/", "//", "a/"):
            store.set(t, Msg(t, b"1"))
        self.assertEqual(topics_of(store.match("a/+/b")), ["a//b"])
        self.assertEqual(topics_of(store.match("a//b")), ["a//b"])
        self.assertEqual(topics_of(store.match("+/+")), ["/", "a/", "a/b"])
        self.assertEqual(topics_of(store.match("/#")), ["/", "//"])
        self.assertEqual(topics_of(store.match("a/+")), ["a/", "a/b"])

    def test_deep_topic_does_not_recurse(self):
        store = RetainedStore()
        deep = "/".join(["x"] * 20000)
        store.set(deep, Msg(deep, b"1"))
        self.assertEqual(len(store.match("#")), 1)
        self.assertEqual(len(store.match("/".join(["+"] * 20000))), 1)
        self.assertEqual([t for t, _ in store.items()], [deep])
        self.assertTrue(store.clear(deep))
        self.assertEqual(store.node_count(), 0)

    def test_match_returns_a_new_list(self):
        store = RetainedStore()
        self.assertEqual(store.match("#"), [])
        store.match("#").append("junk")
        store.set("a", Msg("a", b"1"))
        store.match("a").append("junk")
        self.assertEqual(len(store.match("a")), 1)


levels = st.sampled_from(["a", "b", "", "$x"])
topics = st.lists(levels, min_size=1, max_size=4).map("/".join)
filters = st.lists(st.sampled_from(["a", "b", "", "$x", "+"]), min_size=1, max_size=4).flatmap(
    lambda ls: st.sampled_from(["/".join(ls), "/".join(ls + ["#"]), "#"])
)


class PropertyTests(TestCase):
    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(
        ops=st.lists(st.tuples(topics, st.sampled_from([b"", b"1", b"2"])), max_size=15),
        probe=st.lists(filters, min_size=1, max_size=6),
    )
    def test_agrees_with_reference(self, ops, probe):
        store = RetainedStore()
        model = {}
        for t, payload in ops:
            store.set(t, Msg(t, payload))
            if payload:
                model[t] = payload
            else:
                model.pop(t, None)
        self.assertEqual(len(store), len(model))
        for f in probe:
            got = sorted((m.topic, m.payload) for m in store.match(f))
            expected = sorted((t, p) for t, p in model.items() if reference_match(f, t))
            self.assertEqual(got, expected, f)
        for t in list(model):
            self.assertTrue(store.clear(t))
        self.assertEqual(store.node_count(), 0)
