"""Broker behaviour through real connections: sessions, routing, retained, QoS flows.

The harness these tests drive (and the other broker test modules share) is in
tests/support/broker.py.
"""
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec import (
    Connack,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from mqttd.config import AuthConfig, User
from tests.support.broker import Client, Harness, ManualStore, pub, publishes


class SubscribeTests(unittest.TestCase):
    def test_suback_codes_in_order_and_delivery(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(7, (("a/+", 1), ("b/#", 0), ("c", 2))))
        self.assertEqual(sub.received(), [Suback(7, (1, 0, 2))])
        publisher = h.client("pub")
        publisher.send(pub("a/x", b"1", qos=2, pid=3), pub("b/y/z", b"2", qos=1, pid=4))
        got = publishes(sub.received())
        self.assertEqual([(p.topic, p.payload, p.qos, p.retain) for p in got],
                         [("a/x", b"1", 1, False), ("b/y/z", b"2", 0, False)])

    def test_overlapping_filters_deliver_once_at_max_qos(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(1, (("a/#", 0), ("a/+", 1))))
        sub.received()
        h.client("pub").send(pub("a/b", qos=2, pid=9))
        got = publishes(sub.received())
        self.assertEqual([(p.topic, p.qos) for p in got], [("a/b", 1)])

    def test_unsubscribe_acks_and_stops_delivery(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 0),)))
        sub.received()
        sub.send(Unsubscribe(2, ("t", "never/subscribed")))
        self.assertEqual(sub.received(), [Unsuback(2)])
        h.client("pub").send(pub("t"))
        self.assertEqual(sub.received(), [])
        self.assertEqual(len(h.broker.trie), 0)

    def test_dollar_topics_not_matched_by_leading_wildcards(self):
        h = Harness()
        wild = h.client("wild")
        wild.send(Subscribe(1, (("#", 0), ("+/x", 0))))
        exact = h.client("exact")
        exact.send(Subscribe(1, (("$SYS/x", 0),)))
        wild.received()
        exact.received()
        h.client("pub").send(pub("$SYS/x"))
        self.assertEqual(publishes(wild.received()), [])
        self.assertEqual([p.topic for p in publishes(exact.received())], ["$SYS/x"])

    def test_clean_session_subscriptions_end_with_connection(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 1),)))
        sub.disconnect()
        self.assertEqual(len(h.broker.trie), 0)
        self.assertNotIn("sub", h.broker.sessions)
        again = h.client("sub")
        h.client("pub").send(pub("t", qos=1))
        self.assertEqual(publishes(again.received()), [])


class RetainedTests(unittest.TestCase):
    def test_retained_sent_on_subscribe_with_retain_flag(self):
        h = Harness()
        h.client("pub").send(pub("r/1", b"one", qos=1, retain=True),
                             pub("r/2", b"two", qos=0, retain=True))
        sub = h.client("sub")
        sub.send(Subscribe(5, (("r/+", 1),)))
        packets = sub.received()
        self.assertEqual(packets[0], Suback(5, (1,)))
        got = sorted((p.topic, p.payload, p.qos, p.retain) for p in publishes(packets))
        self.assertEqual(got, [("r/1", b"one", 1, True), ("r/2", b"two", 0, True)])

    def test_retained_qos_capped_by_granted(self):
        h = Harness()
        h.client("pub").send(pub("r", b"v", qos=2, retain=True))
        sub = h.client("sub")
        sub.send(Subscribe(1, (("r", 0),)))
        got = publishes(sub.received())
        self.assertEqual([(p.qos, p.retain) for p in got], [(0, True)])

    def test_live_delivery_clears_retain_flag(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(1, (("r", 0),)))
        sub.received()
        h.client("pub").send(pub("r", b"v", retain=True))
        self.assertEqual([p.retain for p in publishes(sub.received())], [False])

    def test_replace_and_clear(self):
        h = Harness()
        p = h.client("pub")
        p.send(pub("r", b"old", retain=True), pub("r", b"new", retain=True))
        sub = h.client("sub")
        sub.send(Subscribe(1, (("r", 0),)))
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"new"])
        p.send(pub("r", b"", retain=True))
        self.assertEqual(len(h.broker.retained), 0)
        sub2 = h.client("sub2")
        sub2.send(Subscribe(1, (("r", 0),)))
        self.assertEqual(publishes(sub2.received()), [])

    def test_non_retained_publish_leaves_retained_alone(self):
        h = Harness()
        p = h.client("pub")
        p.send(pub("r", b"kept", retain=True), pub("r", b"live", retain=False))
        sub = h.client("sub")
        sub.send(Subscribe(1, (("r", 0),)))
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"kept"])

    def test_repeated_subscription_resends_retained_and_replaces_qos(self):
        h = Harness()
        h.client("pub").send(pub("r", b"v", qos=1, retain=True))
        sub = h.client("sub")
        sub.send(Subscribe(1, (("r", 0),)))
        self.assertEqual([m.qos for m in publishes(sub.received())], [0])
        sub.send(Subscribe(2, (("r", 1),)))
        packets = sub.received()
        self.assertEqual(packets[0], Suback(2, (1,)))
        self.assertEqual([(m.qos, m.retain) for m in publishes(packets)], [(1, True)])
        self.assertEqual(len(h.broker.trie), 1)

    def test_dollar_retained_not_sent_to_leading_wildcard(self):
        h = Harness()
        h.client("pub").send(pub("$SYS/up", b"1", retain=True), pub("up", b"2", retain=True))
        sub = h.client("sub")
        sub.send(Subscribe(1, (("#", 0),)))
        self.assertEqual([m.topic for m in publishes(sub.received())], ["up"])

    def test_retain_applied_only_after_store_succeeds(self):
        store = ManualStore()
        h = Harness(store=store)
        h.client("pub").send(pub("r", b"v", qos=1, retain=True))
        self.assertEqual(len(h.broker.retained), 0)
        store.succeed(0)
        self.assertEqual(len(h.broker.retained), 1)


class PersistentSessionTests(unittest.TestCase):
    def test_session_present_and_subscriptions_kept(self):
        h = Harness()
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 1),)))
        sub.received()
        sub.disconnect()
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(True, 0))
        h.client("pub").send(pub("t", b"hi", qos=1))
        self.assertEqual([m.payload for m in publishes(again.received())], [b"hi"])

    def test_new_persistent_session_not_present(self):
        h = Harness()
        c = Client(h)
        self.assertEqual(c.connect("dev", clean=False), Connack(False, 0))

    def test_clean_connect_discards_persistent_session(self):
        h = Harness()
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 1),)))
        sub.disconnect()
        clean = Client(h)
        self.assertEqual(clean.connect("dev", clean=True), Connack(False, 0))
        self.assertEqual(len(h.broker.trie), 0)
        clean.disconnect()
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(False, 0))

    def test_qos1_and_qos2_queued_offline_delivered_on_reconnect_qos0_dropped(self):
        h = Harness()
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 2),)))
        sub.disconnect()
        p = h.client("pub")
        p.send(pub("t", b"a", qos=1, pid=1), pub("t", b"b", qos=0),
               pub("t", b"c", qos=2, pid=2))
        self.assertEqual(h.broker.metrics.mqtt_dropped["offline"], 1)
        again = Client(h)
        again.connect("dev", clean=False)
        got = publishes(again.received())
        self.assertEqual([(m.payload, m.qos, m.dup) for m in got],
                         [(b"a", 1, False), (b"c", 2, False)])

    def test_queue_bound_drops_new_messages_and_counts(self):
        h = Harness(max_queued_messages=2)
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 1),)))
        sub.disconnect()
        p = h.client("pub")
        for i in range(5):
            p.send(pub("t", b"%d" % i, qos=1, pid=i + 1))
        self.assertEqual(h.broker.metrics.mqtt_dropped["queue_full"], 3)
        again = Client(h)
        again.connect("dev", clean=False)
        self.assertEqual([m.payload for m in publishes(again.received())], [b"0", b"1"])

    def test_queue_full_logged_once_per_burst(self):
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = Harness(max_queued_messages=1, max_inflight=1)
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 1),)))
        sub.disconnect()
        p = h.client("pub")
        for i in range(4):
            p.send(pub("t", qos=1, pid=i + 1))

        def full_logs():
            return [e for e in events if "queue full" in e.get("log_format", "")]
        self.assertEqual(len(full_logs()), 1)
        again = Client(h)
        again.connect("dev", clean=False)
        [first] = publishes(again.received())
        again.send(Puback(first.packet_id))  # queue drained: burst over
        p.send(pub("t", qos=1, pid=9), pub("t", qos=1, pid=10), pub("t", qos=1, pid=11))
        self.assertEqual(len(full_logs()), 2)

    def test_unacked_redelivered_with_dup_and_pubrel_resent(self):
        h = Harness()
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 2),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"q1", qos=1, pid=1), pub("t", b"q2a", qos=2, pid=2),
               pub("t", b"q2b", qos=2, pid=3))
        first = publishes(sub.received())
        self.assertEqual([m.payload for m in first], [b"q1", b"q2a", b"q2b"])
        ids = [m.packet_id for m in first]
        sub.send(Pubrec(ids[1]))
        self.assertEqual(sub.received(), [Pubrel(ids[1])])
        sub.lose()  # socket lost without acks
        again = Client(h)
        self.assertEqual(again.connect("dev", clean=False), Connack(True, 0))
        resent = again.received()
        self.assertEqual(resent, [
            Publish("t", b"q1", 1, False, True, ids[0]),
            Pubrel(ids[1]),
            Publish("t", b"q2b", 2, False, True, ids[2]),
        ])
        again.send(Puback(ids[0]), Pubcomp(ids[1]), Pubrec(ids[2]))
        self.assertEqual(again.received(), [Pubrel(ids[2])])
        again.send(Pubcomp(ids[2]))
        self.assertEqual(h.broker.sessions["dev"].inflight, {})

    def test_redelivery_before_queue(self):
        h = Harness(max_inflight=1)
        sub = h.client("dev", clean=False)
        sub.send(Subscribe(1, (("t", 1),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"1", qos=1, pid=1))
        [m1] = publishes(sub.received())
        sub.lose()
        p.send(pub("t", b"2", qos=1, pid=2))
        again = Client(h)
        again.connect("dev", clean=False)
        got = publishes(again.received())
        self.assertEqual([(m.payload, m.dup) for m in got], [(b"1", True)])
        again.send(Puback(m1.packet_id))
        got = publishes(again.received())
        self.assertEqual([(m.payload, m.dup) for m in got], [(b"2", False)])


class OutboundWindowTests(unittest.TestCase):
    def test_max_inflight_window_then_queue(self):
        h = Harness(max_inflight=2)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 1),)))
        sub.received()
        p = h.client("pub")
        for i in range(5):
            p.send(pub("t", b"%d" % i, qos=1, pid=i + 1))
        got = publishes(sub.received())
        self.assertEqual([m.payload for m in got], [b"0", b"1"])
        sub.send(Puback(got[0].packet_id))
        got2 = publishes(sub.received())
        self.assertEqual([m.payload for m in got2], [b"2"])
        sub.send(Puback(got[1].packet_id), Puback(got2[0].packet_id))
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"3", b"4"])

    def test_qos0_not_held_by_window(self):
        h = Harness(max_inflight=1)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 1),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"a", qos=1), pub("t", b"b", qos=1, pid=2), pub("t", b"c", qos=0))
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"a", b"c"])

    def test_packet_ids_skip_ids_in_use(self):
        h = Harness(max_inflight=3)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 1),)))
        sub.received()
        session = h.broker.sessions["sub"]
        session._next_id = 0xFFFE
        p = h.client("pub")
        p.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        ids = [m.packet_id for m in publishes(sub.received())]
        self.assertEqual(ids, [0xFFFF, 1])
        sub.send(Puback(0xFFFF))
        session._next_id = 0  # next candidate 1 is still in flight
        p.send(pub("t", qos=1, pid=3))
        self.assertEqual([m.packet_id for m in publishes(sub.received())], [2])

    def test_qos2_outbound_flow(self):
        h = Harness(max_inflight=1)
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 2),)))
        sub.received()
        p = h.client("pub")
        p.send(pub("t", b"1", qos=2, pid=1), pub("t", b"2", qos=2, pid=2))
        [m] = publishes(sub.received())
        sub.send(Pubrec(m.packet_id))
        self.assertEqual(sub.received(), [Pubrel(m.packet_id)])
        sub.send(Pubcomp(m.packet_id))
        self.assertEqual([x.payload for x in publishes(sub.received())], [b"2"])

    def test_delivered_counter(self):
        h = Harness()
        sub = h.client("sub")
        sub.send(Subscribe(1, (("t", 1),)))
        h.client("pub").send(pub("t"), pub("t", qos=1))
        self.assertEqual(h.broker.metrics.mqtt_delivered, 2)
        self.assertEqual(h.broker.metrics.mqtt_publish_received, 2)


class MessageKeyTests(unittest.TestCase):
    def test_keys_unique_and_differ_across_boots(self):
        a = Harness().broker
        b = Harness().broker
        def key(broker):
            return broker.make_message("c", None, "t", b"", 0, False, 0.0).key

        keys = [key(a) for _ in range(300)]
        self.assertEqual(len(set(keys)), 300)
        self.assertEqual(keys, sorted(keys))  # arrival order: appends to the key index
        self.assertNotEqual(key(a).split("-")[0], key(b).split("-")[0])

    def test_message_fields(self):
        h = Harness(authenticator=StaticAuthenticator(
            AuthConfig(users=(User("u", "p"),))))
        h.clock.advance(123.5)
        h.client("dev", username="u", password=b"p").send(pub("t/1", b"data", qos=1, retain=True))
        [m] = h.store.messages
        self.assertEqual((m.client_id, m.username, m.topic, m.payload, m.qos, m.retain,
                          m.received_at), ("dev", "u", "t/1", b"data", 1, True, 123.5))
        self.assertTrue(m.key.startswith(h.broker.boot_id + "-"))
