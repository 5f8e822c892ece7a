"""Cross-worker delivery, the master's side (``mqttd.tree.relay``): interest passed on
to the other workers only, a starting worker told every set, a dead worker's set dropped;
publishes relayed to the slots named only; and a stalled worker costs the master at most
its bound: the others still get everything, its drops are counted, retained values and
interest are made good once it drains."""
from twisted.logger import formatEvent
from twisted.trial import unittest

from mqttd.codec import Subscribe
from mqttd.tree.relay_wire import DELIVER, RETAINED
from tests.support.broker import pub, publishes
from tests.support.crossing import MiniTree
from tests.support.logs import capture_logs


def lines(events):
    return [formatEvent(e) for e in events]


def subscribe(node, *filters, client_id="sub", qos=0):
    client = node.harness.client(client_id)
    client.send(Subscribe(1, tuple((f, qos) for f in filters)))
    client.received()
    return client


class InterestTests(unittest.TestCase):
    def setUp(self):
        self.tree = MiniTree(workers=3)
        self.tree.pump()

    def remote(self, slot):
        return self.tree.nodes[slot].crossing.remote

    def test_passed_on_to_the_others_only(self):
        subscribe(self.tree.nodes[2], "a/#", "b")
        self.tree.pump()
        for slot in (1, 3):
            self.assertEqual(sorted(self.remote(slot).filters(2)), ["a/#", "b"], slot)
        self.assertEqual(len(self.remote(2)), 0)  # its own are not sent back to it

    def test_a_starting_worker_is_told_every_set(self):
        subscribe(self.tree.nodes[1], "one/#")
        subscribe(self.tree.nodes[3], "three")
        self.tree.pump()
        self.tree.kill(2)
        node = self.tree.start(2)
        self.tree.pump()
        self.assertEqual((node.crossing.remote.filters(1), node.crossing.remote.filters(3)),
                         (["one/#"], ["three"]))

    def test_a_dead_worker_s_set_is_dropped_everywhere(self):
        subscribe(self.tree.nodes[2], "gone/#", "x")
        self.tree.pump()
        logs = capture_logs(self)
        self.tree.kill(2)
        self.tree.pump()
        for slot in (1, 3):
            self.assertEqual(len(self.remote(slot)), 0, slot)
        self.assertEqual(self.tree.relay.interest.slots(), [])
        self.assertTrue(any("worker 2 gone: its 2 subscription filters" in line
                            for line in lines(logs)), lines(logs))
        self.tree.nodes[1].harness.client("pub").send(pub("gone/t", qos=1))
        self.assertEqual(self.tree.nodes[1].up.value(), b"")  # nobody wants it now

    def test_malformed_interest_is_logged_and_changes_nothing(self):
        logs = capture_logs(self)
        self.tree.relay.interest_from(2, {"add": "a/#"})
        self.assertEqual(self.tree.relay.interest.slots(), [])
        self.assertTrue(any("not a list of topic filters" in line for line in lines(logs)))


class PublishTests(unittest.TestCase):
    def setUp(self):
        self.tree = MiniTree(workers=3)

    def test_relayed_to_the_named_live_slots_only(self):
        sub2 = subscribe(self.tree.nodes[2], "t")
        sub3 = subscribe(self.tree.nodes[3], "other")
        self.tree.pump()
        body_of = self.tree.nodes[1].harness.client("pub")
        body_of.send(pub("t", b"hello", qos=1))
        self.tree.pump()
        self.assertEqual([p.payload for p in publishes(sub2.received())], [b"hello"])
        self.assertEqual(publishes(sub3.received()), [])
        self.assertEqual(self.tree.nodes[3].metrics.tree_forward_received, 0)
        # A frame naming a dead slot and its own origin goes nowhere.
        self.tree.kill(2)
        sent = self.tree.metrics.tree_forwarded
        self.tree.relay.forward_from(1, DELIVER, (1, 2, 9), b"\x00" * 30)
        self.assertEqual(self.tree.metrics.tree_forwarded, sent)

    def test_a_malformed_retained_body_is_logged_and_dropped(self):
        logs = capture_logs(self)
        self.tree.relay.forward_from(1, RETAINED | DELIVER, (), b"\x01\x01")
        self.assertEqual(self.tree.relay.retained_topics, 0)
        self.assertTrue(any("forwarded message dropped" in line for line in lines(logs)))


class StalledWorkerTests(unittest.TestCase):
    """Worker 2 stops reading its channel; worker 3 does not."""

    def setUp(self):
        self.tree = MiniTree(workers=3, max_forward_bytes=65_536, buffer=4096)
        self.subs = {slot: subscribe(self.tree.nodes[slot], "#", client_id=f"s{slot}", qos=0)
                     for slot in (2, 3)}
        self.tree.pump()
        self.tree.stalled_down.add(2)
        self.publisher = self.tree.nodes[1].harness.client("pub")

    def test_the_others_get_everything_and_its_drops_are_counted(self):
        for i in range(300):
            self.publisher.send(pub("t", b"%04d" % i + b"p" * 1000, qos=i % 2, pid=1))
            self.tree.pump()
        master = self.tree.nodes[2].master
        self.assertLessEqual(master.backlog, 65_536)
        dropped = self.tree.metrics.tree_forward_dropped
        self.assertGreater(dropped["0"], 0)
        self.assertGreater(dropped["1"], 0)
        got3 = publishes(self.subs[3].received())
        self.assertEqual([p.payload[:4] for p in got3], [b"%04d" % i for i in range(300)])
        self.tree.stalled_down.clear()
        self.tree.pump()
        got2 = [int(p.payload[:4]) for p in publishes(self.subs[2].received())]
        self.assertEqual(got2, sorted(got2))  # gaps, never out of order
        self.assertEqual(len(got2) + dropped["0"] + dropped["1"], 300)

    def test_retained_values_and_interest_are_made_good_when_it_drains(self):
        for i in range(100):  # fills worker 2's channel to its bound
            self.publisher.send(pub("fill", b"p" * 1000, qos=1))
        self.tree.pump()
        for value in (b"v1", b"v2", b"v3"):
            self.publisher.send(pub("r/x", value, qos=1, retain=True))
        self.publisher.send(pub("r/y", b"y", retain=True), pub("r/y", b"", retain=True))
        for n in range(500):  # worker 3's interest changes, more than worker 2 can be told
            subscribe(self.tree.nodes[3], f"f/{n}", client_id=f"c{n}")
        self.tree.pump()
        two = self.tree.nodes[2]
        self.assertLessEqual(two.master.backlog, 65_536 + 100)  # one message past it at most
        self.assertEqual(len(self.tree.nodes[1].crossing.remote.filters(3)), 501)
        self.tree.kill(3)  # and then it dies: worker 2 must not keep its filters
        self.tree.pump()
        self.assertEqual(two.broker.retained.get("r/x"), None)
        self.tree.stalled_down.clear()
        self.tree.pump()
        self.assertEqual(two.broker.retained.get("r/x").payload, b"v3")
        self.assertIsNone(two.broker.retained.get("r/y"))
        self.assertEqual(two.crossing.remote.filters(3), [])
        self.assertEqual(sorted(two.crossing.remote.slots()), [])
