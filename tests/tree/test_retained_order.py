"""Retained values in the tree's master's order (``mqttd.tree.relay``, ``crossing``): two
workers that set one retained topic within a trip of each other end with the same value,
the one the master read last, whichever way the two sets cross; clears and each QoS
included; an older message of one broker run is delivered and not retained, as on one
worker; and a worker that read its set back from SQLite takes the master's order over
it (SQLite keeps the value committed last, which may be the other one).

The interleaving is made by hand: both workers route their own set before either has
read the other's, and the master reads the two in the order the test picks (a worker
whose channel up is not read yet: ``stalled_up``)."""
from twisted.trial import unittest

from mqttd.codec import Subscribe
from mqttd.metrics import Metrics
from mqttd.store.sink import Message
from mqttd.tree.relay_wire import DELIVER, RETAINED, encode
from mqttd.tree.retained_order import RetainedOrder
from tests.support.broker import pub, publishes
from tests.support.crossing import MiniTree


def retained_for_a_new_subscriber(node, topic, client_id):
    """(payload, qos) of the retained message a new subscriber on ``node`` gets for
    ``topic`` (None if none)."""
    client = node.harness.client(client_id)
    client.send(Subscribe(1, ((topic, 2),)))
    got = [(p.payload, p.qos) for p in publishes(client.received()) if p.retain]
    return got[0] if got else None


class CrossingSetsTests(unittest.TestCase):
    def setUp(self):
        self.tree = MiniTree(workers=2)
        self.tree.pump()
        self.one, self.two = self.tree.nodes[1], self.tree.nodes[2]
        self.clients = {1: self.one.harness.client("p1"), 2: self.two.harness.client("p2")}
        self.asked = 0
        self.pid = 0

    def both_set(self, first, second, payloads, qos=(1, 1), topic="r/x"):
        """Each worker routes its own retained publish (``payloads`` by slot) before
        either reads the other's; the master reads slot ``first``'s, then ``second``'s."""
        self.pid += 1
        for slot in (1, 2):
            self.clients[slot].send(pub(topic, payloads[slot], qos=qos[slot - 1],
                                        pid=qos[slot - 1] and self.pid, retain=True))
            self.clients[slot].received()
        self.tree.stalled_up.add(second)
        self.tree.pump()  # the master reads ``first``'s; each worker hears of it
        self.tree.stalled_up.clear()
        self.tree.pump()

    def seen(self, topic="r/x"):
        """What a new subscriber gets on each worker, and what each store holds."""
        self.asked += 1
        held = {slot: node.broker.retained.get(topic) for slot, node in self.tree.nodes.items()}
        return ({slot: retained_for_a_new_subscriber(node, topic, f"new{self.asked}")
                 for slot, node in self.tree.nodes.items()},
                {slot: None if m is None else (m.payload, m.qos) for slot, m in held.items()})

    def assertEverywhere(self, expected, topic="r/x"):
        subscribers, stores = self.seen(topic)
        self.assertEqual(subscribers, {1: expected, 2: expected})
        self.assertEqual(stores, {1: expected, 2: expected})
        kept = self.tree.relay.retained_topics
        self.assertEqual(kept, 0 if expected is None else 1)

    def test_the_set_the_master_reads_last_wins_on_both(self):
        live = {slot: node.harness.client(f"live{slot}") for slot, node in self.tree.nodes.items()}
        for client in live.values():
            client.send(Subscribe(1, (("r/x", 1),)))
            client.received()
        self.tree.pump()
        self.both_set(1, 2, {1: b"one", 2: b"two"})
        self.assertEverywhere((b"two", 1))
        self.both_set(2, 1, {1: b"one again", 2: b"two again"})
        self.assertEverywhere((b"one again", 1))
        # A live subscriber gets each once, as a message (the echo delivers nothing).
        for slot, client in live.items():
            self.assertEqual(sorted((p.payload, p.retain) for p in publishes(client.received())),
                             [(b"one", False), (b"one again", False), (b"two", False),
                              (b"two again", False)], slot)

    def test_each_qos_goes_with_its_value(self):
        self.both_set(1, 2, {1: b"q2", 2: b"q0"}, qos=(2, 0))
        self.assertEverywhere((b"q0", 0))
        self.both_set(2, 1, {1: b"q2", 2: b"q0"}, qos=(2, 0))
        self.assertEverywhere((b"q2", 2))
        self.both_set(1, 2, {1: b"q0", 2: b"q1"}, qos=(0, 1))
        self.assertEverywhere((b"q1", 1))

    def test_a_clear_and_a_set_crossing(self):
        self.both_set(1, 2, {1: b"old", 2: b"older"})  # something to clear
        self.both_set(1, 2, {1: b"", 2: b"set"})  # the clear first, then the set
        self.assertEverywhere((b"set", 1))
        self.both_set(2, 1, {1: b"", 2: b"set again"})  # the set first, then the clear
        self.assertEverywhere(None)
        self.both_set(2, 1, {1: b"a", 2: b"b"})
        self.both_set(2, 1, {1: b"", 2: b""})  # two clears
        self.assertEverywhere(None)

    def test_many_rounds_alternating(self):
        for n in range(20):
            first, second = (1, 2) if n % 2 else (2, 1)
            self.both_set(first, second, {1: b"1-%d" % n, 2: b"2-%d" % n},
                          qos=(n % 3, (n + 1) % 3))
            subscribers, stores = self.seen()
            winner = (b"%d-%d" % (second, n), (n % 3, (n + 1) % 3)[second - 1])
            self.assertEqual((subscribers, stores),
                             ({1: winner, 2: winner}, {1: winner, 2: winner}), n)


class SameRunTests(unittest.TestCase):
    """Keys of one broker run order its messages, in the master as in SQLite: an older
    message routed after a newer one (its commit answered later) is delivered, and not
    retained anywhere."""

    def setUp(self):
        self.tree = MiniTree(workers=2)
        self.two = self.tree.nodes[2]
        self.sub = self.two.harness.client("live")
        self.sub.send(Subscribe(1, (("r/x", 1),)))
        self.sub.received()
        self.tree.pump()

    def message(self, key, payload):
        return Message(key, "c", None, "r/x", payload, 1, True, 0.0)

    def test_an_older_key_of_the_run_is_delivered_not_retained(self):
        run = "00000000000000aa-"
        relay = self.tree.relay
        relay.forward_from(1, DELIVER | RETAINED, (), encode(self.message(run + "02", b"new")))
        relay.forward_from(1, DELIVER | RETAINED, (), encode(self.message(run + "01", b"old")))
        self.tree.pump()
        self.assertEqual([(p.payload, p.retain) for p in publishes(self.sub.received())],
                         [(b"new", False), (b"old", False)])
        self.tree.start(3)  # gets the master's set as it starts (nothing kept locally)
        self.tree.pump()
        self.assertEqual(self.payloads(), {1: b"new", 2: b"new", 3: b"new"})
        # Another run's message is ordered by the master alone, whatever its key.
        relay.forward_from(2, DELIVER | RETAINED, (),
                           encode(self.message("00000000000000bb-00", b"other run")))
        self.tree.pump()
        self.assertEqual(self.payloads(), {1: b"other run", 2: b"other run", 3: b"other run"})

    def payloads(self):
        held = {slot: node.broker.retained.get("r/x") for slot, node in self.tree.nodes.items()}
        return {slot: None if m is None else m.payload for slot, m in held.items()}


class RestartTests(unittest.TestCase):
    """A worker that keeps its retained set in SQLite (``retained_at_start=False``)."""

    def setUp(self):
        self.tree = MiniTree(workers=2, max_forward_bytes=65_536, retained_at_start=False)
        self.one = self.tree.nodes[1]

    def test_a_restarted_worker_takes_the_master_s_order_over_sqlite_s(self):
        publisher = self.one.harness.client("pub")
        publisher.send(pub("r/x", b"master's", qos=1, retain=True))
        self.tree.pump()
        # SQLite committed another worker's close set last: that is what the load reads.
        sqlite_s = Message("00000000000000cc-01", "c", None, "r/x", b"sqlite's", 0, True, 0.0)
        self.tree.kill(2)
        node = self.tree.start(2, holding=True)
        self.tree.pump()
        node.broker.retained.set("r/x", sqlite_s)
        node.broker.retained.set("r/only-in-sqlite", sqlite_s._replace(topic="r/only-in-sqlite"))
        node.crossing.loaded()
        self.tree.pump()
        self.assertEqual(node.broker.retained.get("r/x").payload, b"master's")
        self.assertEqual(retained_for_a_new_subscriber(node, "r/x", "new"), (b"master's", 1))
        # What the master never saw is not touched (every worker read the same SQLite).
        self.assertEqual(node.broker.retained.get("r/only-in-sqlite").payload, b"sqlite's")

    def test_what_it_could_not_hold_while_loading_is_made_good(self):
        self.tree.kill(2)
        node = self.tree.start(2, holding=True)
        self.tree.pump()
        publisher = self.one.harness.client("pub")
        for i in range(100):
            publisher.send(pub(f"r/{i}", b"v" * 1000, qos=1, pid=i + 1, retain=True))
            self.tree.pump()
        self.assertGreater(node.metrics.tree_forward_dropped["1"], 0)
        node.crossing.loaded()
        self.tree.pump()
        self.assertEqual(sorted(t for t, _ in node.broker.retained.items()),
                         sorted(f"r/{i}" for i in range(100)))

    def test_a_clear_the_master_ordered_last_goes_over_sqlite_s_set(self):
        publisher = self.one.harness.client("pub")
        publisher.send(pub("r/x", b"set", qos=1, retain=True),
                       pub("r/x", b"", qos=1, pid=2, retain=True))
        self.tree.pump()
        self.tree.kill(2)
        node = self.tree.start(2, holding=True)
        self.tree.pump()
        # SQLite committed a crossing set after the clear: the load reads it back.
        node.broker.retained.set("r/x", Message("00000000000000cc-01", "c", None, "r/x",
                                                b"sqlite's", 0, True, 0.0))
        node.crossing.loaded()
        self.tree.pump()
        self.assertIsNone(node.broker.retained.get("r/x"))
        self.assertIsNone(retained_for_a_new_subscriber(node, "r/x", "new"))


class ClearedBoundTests(unittest.TestCase):
    def test_the_oldest_clears_are_forgotten_past_the_bound_and_counted(self):
        metrics = Metrics()
        order = RetainedOrder(metrics, max_cleared_bytes=10 * (64 + 3))
        for n in range(15):
            self.assertTrue(order.take(f"c{n:02d}", f"k{n}", True, b""))
        self.assertEqual(order.known(), [f"c{n:02d}" for n in range(5, 15)])
        self.assertEqual(metrics.tree_retained_clears_forgotten, 5)
        order.take("c07", "k", False, encode(Message("k", "c", None, "c07", b"v", 0, True, 0.0)))
        self.assertEqual(len(order), 1)
        self.assertEqual(order.known(), ["c07"] + [f"c{n:02d}" for n in range(5, 15) if n != 7])
        for n in range(20, 30):  # c07 set again is no longer a clear: it stays known
            order.take(f"c{n}", f"k{n}", True, b"")
        self.assertIn("c07", order.known())
        self.assertEqual(metrics.tree_retained_clears_forgotten, 5 + 9)
