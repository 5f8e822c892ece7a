"""What a broker keeps across a crash (mqttd.broker.persistence): retained messages from
mqttd.db, persistent sessions from sessions-<slot>.db, on real files, deterministic.

A "crash" is a second ``Appliance`` on the same data directory while the first was
never stopped: whatever it had not saved is gone, as after ``kill -9``."""
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from mqttd.codec import Connack, Connect, Puback, Pubcomp, Pubrec, Pubrel, Suback, Subscribe
from mqttd.store.sink import Message
from mqttd.store.sqlite import message_row
from tests.support.broker import pub, publishes
from tests.support.logs import capture_logs, disconnect_reasons
from tests.support.persistence import Appliance
from tests.support.store import fired, make_dir


class PersistenceTestCase(TestCase):
    def setUp(self):
        self.dir = make_dir(self)

    def run_(self, **kw):
        return Appliance(self, self.dir, **kw)

    def persistent_subscriber(self, app, topic="t/#", qos=1, client_id="sub"):
        c = app.client(client_id, clean=False)
        c.send(Subscribe(1, ((topic, qos),)))
        app.clock.advance(0)  # the save of a SUBSCRIBE starts on the next turn
        self.assertEqual(c.received(), [Suback(1, (qos,))])
        return c

    def publish(self, app, *messages, client_id="pub"):
        """QoS 1 publishes from a fresh client; each one committed and PUBACKed."""
        c = app.client(client_id)
        for pid, (topic, payload) in enumerate(messages, 1):
            c.send(pub(topic, payload, qos=1, pid=pid))
        self.assertEqual([p for p in c.received() if isinstance(p, Puback)],
                         [Puback(pid) for pid in range(1, len(messages) + 1)])
        c.disconnect()


class RetainedTests(PersistenceTestCase):
    def test_retained_set_is_loaded_at_start(self):
        first = self.run_()
        c = first.client("pub")
        c.send(pub("r/a", b"A", qos=1, retain=True, pid=1),
               pub("r/b", b"B", qos=1, retain=True, pid=2),
               pub("r/b", b"", qos=1, retain=True, pid=3))  # cleared again
        c.received()

        second = self.run_()
        sub = second.client("s")
        sub.send(Subscribe(1, (("r/#", 1),)))
        got = [(p.topic, p.payload, p.retain) for p in publishes(sub.received())]
        self.assertEqual(got, [("r/a", b"A", True)])

    def test_connect_waits_for_the_load(self):
        first = self.run_()
        first.client("pub").send(pub("r/a", b"A", qos=1, retain=True, pid=1))
        second = self.run_(start=False)
        second.sessions_pool.hold = True
        second.broker.start()
        sub = second.client()
        sub.send(Connect("s", True, 0, None, None, None))
        self.assertEqual(sub.received(), [])  # no CONNACK while loading
        while second.sessions_pool.jobs:
            second.sessions_pool.run_next()
        self.assertEqual(sub.received(), [Connack(False, 0)])
        sub.send(Subscribe(1, (("r/#", 1),)))
        self.assertEqual([p.payload for p in publishes(sub.received())], [b"A"])


class SessionTests(PersistenceTestCase):
    def test_subscription_and_queue_survive_a_crash(self):
        first = self.run_()
        sub = self.persistent_subscriber(first)
        sub.lose()
        self.publish(first, ("t/1", b"one"), ("t/2", b"two"), ("x/1", b"other"))

        second = self.run_()  # the first was never stopped: a crash
        self.publish(second, ("t/3", b"three"))
        back = second.client()
        self.assertEqual(back.connect("sub", clean=False), Connack(True, 0))
        got = publishes(back.received())
        self.assertEqual([(p.topic, p.payload, p.qos) for p in got],
                         [("t/1", b"one", 1), ("t/2", b"two", 1), ("t/3", b"three", 1)])

    def test_suback_waits_for_the_subscription_to_be_committed(self):
        app = self.run_()
        c = app.client("sub", clean=False)
        app.sessions_pool.hold = True
        c.send(Subscribe(1, (("t/#", 1),)), pub("t/own", b"after", qos=1, pid=9))
        app.clock.advance(0)
        self.assertEqual(c.received(), [])  # nothing yet, the PUBLISH behind it either
        self.assertTrue(c.paused)
        while app.sessions_pool.jobs:
            app.sessions_pool.run_next()
        packets = c.received()
        self.assertEqual(packets[0], Suback(1, (1,)))
        self.assertIn(Puback(9), packets)
        self.assertEqual(app.rows("SELECT filter, qos FROM subscriptions"), [("t/#", 1)])

    def test_subscription_not_saved_closes_without_suback(self):
        """A SUBACK promises the subscription survives a crash: when its save fails the
        connection closes without one (the client subscribes again), said in the log."""
        app = self.run_()
        events = capture_logs(self)
        c = app.client("sub", clean=False)
        app.sessions_pool.hold = True
        c.send(Subscribe(1, (("t/#", 1),)))
        app.clock.advance(0)
        on_result, *_ = app.sessions_pool.jobs.popleft()  # the save's first read fails
        on_result(False, Failure(OSError("disk full")))
        self.assertEqual(c.received(), [])
        self.assertTrue(c.closed)
        self.assertIn("subscription not saved", disconnect_reasons(events))
        self.assertTrue(any(e.get("client_id") == "sub" and "not saved" in e["log_format"]
                            for e in events if "log_failure" in e))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)  # the save's, ours

    def test_clean_session_suback_does_not_wait_and_nothing_is_saved(self):
        app = self.run_()
        c = app.client("c", clean=True)
        app.sessions_pool.hold = True
        c.send(Subscribe(1, (("t/#", 1),)))
        self.assertEqual(c.received(), [Suback(1, (1,))])
        app.sessions_pool.hold = False
        app.saved()
        self.assertEqual(app.rows("SELECT count(*) FROM sessions"), [(0,)])

    def test_acked_messages_are_not_owed_again(self):
        first = self.run_()
        sub = self.persistent_subscriber(first)
        self.publish(first, ("t/1", b"one"), ("t/2", b"two"))
        delivered = publishes(sub.received())
        sub.send(Puback(delivered[0].packet_id))  # one acked, one not
        first.saved()

        second = self.run_()
        back = second.client()
        self.assertEqual(back.connect("sub", clean=False), Connack(True, 0))
        again = publishes(back.received())
        # The unacked one comes back with its packet id and DUP=1 [MQTT-4.4.0-1].
        self.assertEqual([(p.payload, p.packet_id, p.dup) for p in again],
                         [(b"two", delivered[1].packet_id, True)])

    def test_qos2_delivery_past_pubrec_gets_only_its_pubrel_again(self):
        first = self.run_()
        sub = self.persistent_subscriber(first, qos=2)
        c = first.client("pub")
        c.send(pub("t/2", b"exactly once", qos=2, pid=1))
        (delivered,) = publishes(sub.received())
        sub.send(Pubrec(delivered.packet_id))
        self.assertEqual(sub.received(), [Pubrel(delivered.packet_id)])
        first.saved()

        second = self.run_()
        back = second.client()
        back.connect("sub", clean=False)
        self.assertEqual(back.received(), [Pubrel(delivered.packet_id)])
        back.send(Pubcomp(delivered.packet_id))
        second.saved()
        self.assertEqual(second.rows("SELECT count(*) FROM inflight"), [(0,)])

    def test_offline_queue_is_rebuilt_within_max_queued_messages(self):
        first = self.run_(max_queued_messages=2)
        self.persistent_subscriber(first).lose()
        self.publish(first, ("t/1", b"1"), ("t/2", b"2"), ("t/3", b"3"))

        second = self.run_(max_queued_messages=2)
        self.assertEqual(second.broker.metrics.mqtt_dropped["queue_full"], 1)
        back = second.client()
        back.connect("sub", clean=False)
        self.assertEqual([p.payload for p in publishes(back.received())], [b"1", b"2"])

    def test_expiry_counts_from_when_the_session_went_offline(self):
        first = self.run_(session_expiry=100.0)
        self.persistent_subscriber(first).lose()
        first.saved()  # offline since t=0 (clock) is saved
        clock = first.clock
        clock.advance(60)

        second = self.run_(session_expiry=100.0, clock=clock)
        self.assertIn("sub", second.broker.sessions)
        clock.advance(41)  # 101 s offline
        self.assertNotIn("sub", second.broker.sessions)
        second.saved()
        self.assertEqual(second.rows("SELECT count(*) FROM sessions"), [(0,)])

    def test_an_expired_session_is_dropped_at_load(self):
        first = self.run_(session_expiry=10.0)
        self.persistent_subscriber(first).lose()
        first.saved()
        first.clock.advance(20)
        second = self.run_(session_expiry=10.0, clock=first.clock)
        self.assertEqual(second.broker.sessions, {})
        self.assertEqual(second.rows("SELECT count(*) FROM subscriptions"), [(0,)])

    def test_a_clean_connect_deletes_the_saved_session(self):
        first = self.run_()
        self.persistent_subscriber(first).lose()
        first.client("sub", clean=True).disconnect()
        first.saved()
        second = self.run_()
        self.assertEqual(second.broker.sessions, {})

    def test_sessions_of_another_slot_are_not_loaded(self):
        first = self.run_(slot=1)
        self.persistent_subscriber(first).lose()
        self.assertEqual(self.run_(slot=2).broker.sessions, {})
        self.assertIn("sub", self.run_(slot=1).broker.sessions)


class DeliveredNotSavedTests(PersistenceTestCase):
    def test_a_delivery_not_saved_yet_is_owed_again(self):
        """Delivered, never acked, and no save since: after the cursor, so owed."""
        first = self.run_()
        sub = self.persistent_subscriber(first)
        self.publish(first, ("t/1", b"one"))
        self.assertEqual(len(publishes(sub.received())), 1)

        second = self.run_()
        back = second.client()
        back.connect("sub", clean=False)
        self.assertEqual([p.payload for p in publishes(back.received())], [b"one"])


class RoutedLateTests(PersistenceTestCase):
    def test_a_message_routed_after_the_save_that_passed_it_is_still_owed(self):
        """The tree: another worker commits a message for this worker's subscriber, the
        subscriber goes offline and its save reads a cursor past that row, THEN the
        forwarded message arrives. Queueing it marks the session changed, so the next
        save (here the clean stop's) puts the cursor back before it."""
        first = self.run_()
        sub = self.persistent_subscriber(first)
        late = Message("late-1", "elsewhere", None, "t/late", b"owed", 1, False, 1.0)
        fired(first.store.insert_batch([message_row(late)]))  # committed on the other worker
        sub.lose()
        first.saved()  # the offline save: its cursor is past the row of ``late``
        first.broker.route(late, forward=False)  # the forward arrives after it
        fired(first.persistence.stop())

        second = self.run_()
        back = second.client()
        self.assertEqual(back.connect("sub", clean=False), Connack(True, 0))
        self.assertEqual([p.payload for p in publishes(back.received())], [b"owed"])

    def test_a_message_committed_after_going_offline_and_never_routed_here_is_owed(self):
        """The forward is cut off (the tree stopped): the message never reaches this
        broker, but it committed after the session went offline, so its cursor, held
        at a rowid read then, stays before it."""
        first = self.run_()
        sub = self.persistent_subscriber(first)
        sub.lose()  # went offline: the newest rowid is read now
        late = Message("late-2", "elsewhere", None, "t/late", b"owed", 1, False, 1.0)
        fired(first.store.insert_batch([message_row(late)]))  # committed on another worker
        first.saved()  # the offline save reads a rowid past it
        fired(first.persistence.stop())  # and the forward never arrives

        second = self.run_()
        back = second.client()
        self.assertEqual(back.connect("sub", clean=False), Connack(True, 0))
        self.assertEqual([p.payload for p in publishes(back.received())], [b"owed"])

    def test_an_offline_session_owes_nothing_twice_after_a_restart(self):
        """What it acked while online stays behind its cursor (held at the rowid read
        when it went offline), and each restart keeps it there."""
        first = self.run_()
        sub = self.persistent_subscriber(first)
        self.publish(first, ("t/1", b"one"))
        sub.send(*[Puback(p.packet_id) for p in publishes(sub.received())])
        sub.lose()
        self.publish(first, ("t/2", b"two"))
        first.saved()
        fired(first.persistence.stop())
        second = self.run_()
        fired(second.persistence.stop())  # restored, offline, nothing changed
        third = self.run_()
        back = third.client()
        self.assertEqual(back.connect("sub", clean=False), Connack(True, 0))
        self.assertEqual([p.payload for p in publishes(back.received())], [b"two"])
