"""Cross-worker delivery, a worker's side, through the real channel ends and the master's
relay in one process (``tests.support.crossing.MiniTree``): a subscriber on worker 2
gets what a client of worker 1 publishes, at min(QoS, granted), retain 0, in order, not
stored again; only a matching filter makes a publish cross, ``$`` rule kept; a filter
is announced once; retained messages reach every worker; and what the channel to the
master cannot take is dropped by QoS or owed (retained), never buffered without bound."""
from twisted.trial import unittest

from mqttd.codec import Publish, Puback, Pubrec, Subscribe, Unsubscribe
from mqttd.tree.echo_waits import ECHO_WAIT
from tests.support.broker import pub, publishes
from tests.support.crossing import MiniTree


def subscriber(node, topic_filter, qos=0, client_id="sub"):
    client = node.harness.client(client_id)
    client.send(Subscribe(1, ((topic_filter, qos),)))
    client.received()
    return client


class DeliveryTests(unittest.TestCase):
    def setUp(self):
        self.tree = MiniTree(workers=2)
        self.one, self.two = self.tree.nodes[1], self.tree.nodes[2]

    def test_each_qos_as_on_one_worker(self):
        subs = {granted: subscriber(self.two, "a/#", granted, f"sub{granted}")
                for granted in (0, 1, 2)}
        self.tree.pump()
        publisher = self.one.harness.client("pub")
        for qos in (0, 1, 2):
            publisher.send(pub("a/b", b"\x00\xffq%d" % qos, qos=qos, pid=qos or None))
        self.tree.pump()
        for granted, client in subs.items():
            got = [(p.payload, p.qos, p.retain) for p in publishes(client.received())]
            self.assertEqual(got, [(b"\x00\xffq%d" % q, min(q, granted), False)
                                   for q in (0, 1, 2)], granted)
        self.assertEqual(self.one.harness.store.count, 3)
        self.assertEqual(self.two.harness.store.count, 0)  # committed once, on worker 1
        self.assertEqual(self.one.metrics.tree_forwarded, 3)
        self.assertEqual(self.two.metrics.tree_forward_received, 3)
        self.assertEqual(self.tree.metrics.tree_forwarded, 3)
        # What worker 2 delivered it does not send on again.
        self.assertEqual(self.two.metrics.tree_forwarded, 0)

    def test_order_per_publisher_over_200_messages(self):
        sub = subscriber(self.two, "o/+", 0)
        self.tree.pump()
        publisher = self.one.harness.client("pub")
        for i in range(200):
            publisher.send(pub("o/t", str(i).encode(), qos=i % 3, pid=i % 3 and i + 1))
            if i % 7 == 0:
                self.tree.pump()
        self.tree.pump()
        self.assertEqual([p.payload for p in publishes(sub.received())],
                         [str(i).encode() for i in range(200)])

    def test_nothing_crosses_without_a_matching_filter(self):
        self.tree.pump()  # the (empty) interest snapshots at start
        publisher = self.one.harness.client("pub")
        self.assertFalse(self.one.crossing.wanted)
        publisher.send(pub("a/b", qos=1))
        self.assertEqual(self.one.up.value(), b"")  # not even a frame to the master
        subscriber(self.two, "b/#")
        self.tree.pump()
        self.assertTrue(self.one.crossing.wanted)
        publisher.send(pub("a/b", qos=1, pid=2))
        self.assertEqual(self.one.up.value(), b"")
        self.assertEqual(self.one.metrics.tree_forwarded, 0)

    def test_dollar_topics_are_not_matched_by_hash(self):
        sub = subscriber(self.two, "#", 0)
        self.tree.pump()
        publisher = self.one.harness.client("pub")
        publisher.send(pub("$SYS/broker/load", b"no"), pub("plain", b"yes"))
        self.tree.pump()
        self.assertEqual([p.topic for p in publishes(sub.received())], ["plain"])
        self.assertEqual(self.one.metrics.tree_forwarded, 1)

    def test_a_filter_is_announced_once_and_unsubscribing_stops_forwarding(self):
        first = subscriber(self.two, "u/#", 0, "s1")
        second = subscriber(self.two, "u/#", 1, "s2")
        self.tree.pump()
        self.assertEqual(self.tree.interest_said(2)[1:],  # after the snapshot at open
                         [{"add": ["u/#"]}])
        first.send(Unsubscribe(2, ("u/#",)))
        self.tree.pump()
        self.assertEqual(len(self.tree.interest_said(2)), 2)  # one left: nothing said
        self.assertTrue(self.one.crossing.wanted)
        second.send(Unsubscribe(2, ("u/#",)))
        self.tree.pump()
        self.assertEqual(self.tree.interest_said(2)[2:], [{"remove": ["u/#"]}])
        self.assertFalse(self.one.crossing.wanted)
        self.one.harness.client("pub").send(pub("u/x", qos=1))
        self.assertEqual(self.one.up.value(), b"")

    def test_a_session_that_ends_withdraws_its_filters(self):
        sub = subscriber(self.two, "w/#")
        self.tree.pump()
        sub.disconnect()  # a clean session: its subscriptions go with it
        self.tree.pump()
        self.assertEqual(len(self.one.crossing.remote), 0)


class RetainedTests(unittest.TestCase):
    def setUp(self):
        self.tree = MiniTree(workers=3)

    def test_a_retained_set_and_clear_reach_every_worker(self):
        publisher = self.tree.nodes[1].harness.client("pub")
        publisher.send(pub("r/x", b"v1", qos=1, retain=True))
        self.tree.pump()
        for slot in (2, 3):
            kept = self.tree.nodes[slot].broker.retained.get("r/x")
            self.assertEqual((kept.payload, kept.qos), (b"v1", 1), slot)
        later = self.tree.nodes[3].harness.client("later")
        later.send(Subscribe(1, (("r/#", 2),)))
        got = publishes(later.received())
        self.assertEqual([(p.topic, p.payload, p.qos, p.retain) for p in got],
                         [("r/x", b"v1", 1, True)])
        publisher.send(pub("r/x", b"", qos=1, pid=2, retain=True))
        self.tree.pump()
        # The live subscriber got the clear as a message; nothing is retained anywhere.
        self.assertEqual([(p.payload, p.retain) for p in publishes(later.received())],
                         [(b"", False)])
        for slot in (1, 2, 3):
            self.assertIsNone(self.tree.nodes[slot].broker.retained.get("r/x"), slot)

    def test_a_worker_that_starts_again_gets_the_retained_set(self):
        publisher = self.tree.nodes[1].harness.client("pub")
        publisher.send(pub("r/a", b"A", qos=1, retain=True),
                       pub("r/b", b"B", qos=0, retain=True),
                       pub("r/b", b"B2", qos=0, retain=True),
                       pub("r/c", b"C", qos=1, pid=2, retain=True),
                       pub("r/c", b"", qos=1, pid=3, retain=True))
        self.tree.pump()
        self.tree.kill(2)
        node = self.tree.start(2)
        self.tree.pump()
        retained = node.broker.retained
        self.assertEqual(sorted((t, m.payload) for t, m in retained.items()),
                         [("r/a", b"A"), ("r/b", b"B2")])
        self.assertEqual(node.metrics.tree_forward_received, 2)
        self.assertEqual(node.harness.client("late").received(), [])  # stored, not sent


class RetainedAckTests(unittest.TestCase):
    """The ack of a retained set waits for the master's echo of it: once it is read, a
    client of any worker reads the new value (the window CI once caught: a subscriber on
    the other worker, connected after the PUBACK, got the value it replaced)."""

    def setUp(self):
        self.tree = MiniTree(workers=2)
        self.one, self.two = self.tree.nodes[1], self.tree.nodes[2]
        self.publisher = self.one.harness.client("pub")

    def acks(self):
        return [p for p in self.publisher.received() if isinstance(p, (Puback, Pubrec))]

    def test_the_ack_waits_for_the_echo_and_the_other_worker_has_the_value_then(self):
        self.publisher.send(pub("r/x", b"v1", qos=1, retain=True))
        self.assertEqual(self.acks(), [])  # committed, but the master has not echoed it
        self.assertIsNone(self.two.broker.retained.get("r/x"))
        self.tree.pump()
        self.assertEqual(self.acks(), [Puback(1)])
        self.assertEqual(self.two.broker.retained.get("r/x").payload, b"v1")

    def test_set_replace_clear_each_acked_after_every_worker_has_it(self):
        for pid, payload in ((1, b"v1"), (2, b"v2"), (3, b"")):
            self.publisher.send(pub("r/x", payload, qos=1, pid=pid, retain=True))
            self.tree.pump()
            self.assertEqual(self.acks(), [Puback(pid)])
            later = self.two.harness.client(f"later{pid}")
            later.send(Subscribe(1, (("r/x", 1),)))
            got = [p.payload for p in publishes(later.received())]
            self.assertEqual(got, [payload] if payload else [], pid)

    def test_what_follows_waits_behind_it_in_receive_order(self):
        self.publisher.send(pub("r/x", b"v1", qos=1, pid=1, retain=True),
                            pub("t", b"plain", qos=1, pid=2),
                            pub("t", b"two", qos=2, pid=3))
        self.assertEqual(self.acks(), [])
        self.tree.pump()
        self.assertEqual(self.acks(), [Puback(1), Puback(2), Pubrec(3)])

    def test_a_plain_publish_is_not_held(self):
        self.publisher.send(pub("t", b"plain", qos=1))
        self.assertEqual(self.acks(), [Puback(1)])

    def test_qos_0_retained_has_no_ack_to_hold(self):
        self.publisher.send(pub("r/x", b"v1", qos=0, retain=True), pub("t", qos=1, pid=2))
        self.assertEqual(self.acks(), [Puback(2)])

    def test_an_echo_that_never_comes_is_waited_for_echo_wait_seconds(self):
        self.tree.stalled_up.add(1)  # the master does not read worker 1
        self.publisher.send(pub("r/x", b"v1", qos=1, retain=True))
        clock = self.one.harness.clock
        clock.advance(ECHO_WAIT - 0.001)
        self.assertEqual(self.acks(), [])
        clock.advance(0.001)
        self.assertEqual(self.acks(), [Puback(1)])
        self.tree.stalled_up.clear()
        self.tree.pump()  # the late echo releases nothing twice
        self.assertEqual(self.acks(), [])

    def test_a_newer_value_of_this_worker_releases_the_older_sets_too(self):
        self.tree.stalled_up.add(1)
        self.publisher.send(pub("r/x", b"v1", qos=1, pid=1, retain=True),
                            pub("r/x", b"v2", qos=1, pid=2, retain=True))
        self.tree.stalled_up.clear()
        self.tree.pump()
        self.assertEqual(self.acks(), [Puback(1), Puback(2)])

    def test_another_workers_value_does_not_release_it(self):
        other = self.two.harness.client("other")
        other.send(pub("r/x", b"theirs", qos=0, retain=True))
        self.tree.stalled_up.add(1)
        self.publisher.send(pub("r/x", b"ours", qos=1, retain=True))
        self.tree.pump()  # worker 2's value reaches worker 1; the master has not read ours
        self.assertEqual(self.acks(), [])
        self.tree.stalled_up.clear()
        self.tree.pump()
        self.assertEqual(self.acks(), [Puback(1)])
        self.assertEqual(self.two.broker.retained.get("r/x").payload, b"ours")

    def test_the_masters_channel_lost_releases_every_waiting_ack(self):
        self.tree.stalled_up.add(1)
        self.publisher.send(pub("r/x", b"v1", qos=1, retain=True))
        self.one.crossing.lost()
        self.assertEqual(self.acks(), [Puback(1)])

    def test_a_close_while_waiting_routes_what_followed(self):
        sub = self.one.harness.subscriber("t", qos=1)
        self.tree.stalled_up.add(1)
        self.publisher.send(pub("r/x", b"v1", qos=1, pid=1, retain=True),
                            pub("t", b"after", qos=1, pid=2))
        self.publisher.disconnect()
        self.assertEqual([p.payload for p in publishes(sub.received())], [b"after"])


class BoundTests(unittest.TestCase):
    """Worker 1's channel to the master stops being read (a stalled master)."""

    def setUp(self):
        self.tree = MiniTree(workers=2, max_forward_bytes=65_536, buffer=4096)
        self.one, self.two = self.tree.nodes[1], self.tree.nodes[2]
        self.sub = subscriber(self.two, "#", 1)
        self.tree.pump()
        self.tree.stalled_up.add(1)
        self.publisher = self.one.harness.client("pub")

    def publish(self, count, qos, size=1000, retain=False, topic="t"):
        for i in range(count):
            self.publisher.send(pub(topic, b"p" * size, qos=qos, pid=qos and 1, retain=retain))
            if qos:
                self.publisher.received()  # the PUBACKs

    def test_qos_0_is_dropped_past_half_and_qos_1_past_all_of_it(self):
        self.publish(100, 0)
        dropped0 = self.one.metrics.tree_forward_dropped["0"]
        backlog = self.one.worker.backlog
        self.assertGreater(dropped0, 0)
        self.assertLessEqual(backlog, 65_536 // 2)
        self.publish(100, 1)  # the other half is still there for QoS 1
        self.assertGreater(self.one.worker.backlog, 65_536 // 2)
        self.assertLessEqual(self.one.worker.backlog, 65_536)
        self.assertGreater(self.one.metrics.tree_forward_dropped["1"], 0)
        # What was sent arrives, in order; the publishers were acknowledged all along.
        self.tree.stalled_up.clear()
        self.tree.pump()
        sent = self.one.metrics.tree_forwarded
        got = publishes(self.sub.received())
        self.assertEqual(len(got), min(sent, 200))
        self.assertEqual(sent + dropped0 + self.one.metrics.tree_forward_dropped["1"], 200)
        self.assertEqual(self.one.harness.store.count, 200)

    def test_retained_values_are_owed_not_dropped(self):
        self.publish(100, 1)  # fill it
        self.publish(3, 1, size=10, retain=True, topic="r/x")
        self.publish(1, 0, size=10, retain=True, topic="r/y")
        self.assertIsNone(self.two.broker.retained.get("r/x"))
        self.tree.stalled_up.clear()
        self.tree.pump()
        self.assertEqual(self.two.broker.retained.get("r/x").payload, b"p" * 10)
        self.assertEqual(self.two.broker.retained.get("r/y").payload, b"p" * 10)

    def test_interest_changes_past_the_bound_go_as_one_snapshot(self):
        self.publish(100, 1)  # the channel holds nearly all it may
        local = self.one.harness.client("local")
        for n in range(300):  # far more than fits
            local.send(Subscribe(n + 1, ((f"x/{n}", 0),)))
        for n in range(0, 300, 2):
            local.send(Unsubscribe(n + 1, (f"x/{n}",)))
        self.assertLess(self.one.worker.backlog, 65_536 + 100)  # one message past it at most
        said = len(self.tree.said)
        self.tree.stalled_up.clear()
        self.tree.pump()
        interest = [p for s, k, p in self.tree.said[said:] if k == "interest"]
        self.assertEqual(interest[-1]["reset"], True)  # the whole set, once it drained
        self.assertEqual(sorted(interest[-1]["add"]), sorted(f"x/{n}" for n in range(1, 300, 2)))
        remote = self.two.crossing.remote
        self.assertEqual(sorted(remote.filters(1)), sorted(f"x/{n}" for n in range(1, 300, 2)))


class ReceivingTests(unittest.TestCase):
    def test_a_forwarded_publish_is_delivered_into_the_session_window(self):
        tree = MiniTree(workers=2)
        sub = subscriber(tree.nodes[2], "q/#", 1)
        tree.pump()
        publisher = tree.nodes[1].harness.client("pub")
        window = tree.nodes[2].broker.max_inflight
        for i in range(window + 5):
            publisher.send(pub("q/t", str(i).encode(), qos=1, pid=i + 1))
        tree.pump()
        got = publishes(sub.received())
        self.assertEqual(len(got), window)  # the rest queued, as a local route queues
        for packet in got:
            sub.send(Puback(packet.packet_id))
        rest = [p for p in sub.received() if isinstance(p, Publish)]
        self.assertEqual([p.payload for p in got + rest],
                         [str(i).encode() for i in range(window + 5)])


class LoadingTests(unittest.TestCase):
    """A worker that keeps its retained set in SQLite reads it back as it starts; the
    master does not send it one, and what other workers send meanwhile waits for it."""

    def setUp(self):
        self.tree = MiniTree(workers=2, max_forward_bytes=65_536, retained_at_start=False)
        self.publisher = self.tree.nodes[1].harness.client("pub")

    def test_what_comes_while_it_loads_goes_after_what_it_read_back(self):
        self.publisher.send(pub("r/x", b"old", qos=1, retain=True))
        self.tree.pump()
        committed = self.tree.nodes[1].broker.retained.get("r/x")  # in SQLite
        self.tree.kill(2)
        node = self.tree.start(2, holding=True)
        self.tree.pump()
        self.assertEqual(node.metrics.tree_forward_received, 0)  # no snapshot from the master
        self.publisher.send(pub("r/x", b"new", qos=1, pid=2, retain=True))
        self.tree.pump()
        self.assertIsNone(node.broker.retained.get("r/x"))  # held
        # The load reads back the value committed before it (what Broker.restore does).
        node.broker.retained.set("r/x", committed)
        node.crossing.loaded()
        self.assertEqual(node.broker.retained.get("r/x").payload, b"new")
        self.assertEqual(node.metrics.tree_forward_received, 1)

    def test_what_is_held_is_bounded(self):
        self.tree.kill(2)
        node = self.tree.start(2, holding=True)
        self.tree.pump()
        for i in range(100):
            self.publisher.send(pub(f"r/{i}", b"v" * 1000, qos=1, pid=i + 1, retain=True))
            self.tree.pump()
        dropped = node.metrics.tree_forward_dropped["1"]
        self.assertGreater(dropped, 0)
        node.crossing.loaded()
        self.assertEqual(len(node.broker.retained) + dropped, 100)
        self.assertLessEqual(len(node.broker.retained) * 1000, 65_536)
