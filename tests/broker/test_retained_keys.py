"""The in-memory retained store follows mqttd.db's rule: an older message of the same
broker run (its key) never replaces a newer one, so memory and disk agree."""
from twisted.trial.unittest import TestCase

from mqttd.broker.retained import RetainedStore
from tests.support.store import message


def key(boot, counter):
    return f"{boot * 16}-{counter:012x}-{'0' * 16}"


class RetainedKeyTests(TestCase):
    def test_an_older_key_of_the_same_run_is_ignored(self):
        store = RetainedStore()
        store.set("t", message(key("a", 2), topic="t", payload=b"new"))
        store.set("t", message(key("a", 1), topic="t", payload=b"old"))
        self.assertEqual(store.get("t").payload, b"new")
        store.set("t", message(key("a", 1), topic="t", payload=b""))  # an older clear
        self.assertEqual(store.get("t").payload, b"new")
        # Another run's message (a restarted broker) and newer keys do replace.
        store.set("t", message(key("b", 1), topic="t", payload=b"b1"))
        self.assertEqual(store.get("t").payload, b"b1")
        store.set("t", message(key("b", 2), topic="t", payload=b""))
        self.assertIsNone(store.get("t"))
