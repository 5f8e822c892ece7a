"""Cross-worker delivery in the real tree (``server.workers = 2``): a subscriber on one
worker gets what a client of the other publishes, at each QoS, in order, with the ``$``
rule and retained messages as on one worker; unsubscribing stops it; a killed worker's
interest is dropped and its successor gets the retained set.

Client ids are chosen for their worker with the balancer's hash, and where each one
landed is checked from /proc (``owner``), not taken on trust. A subscription reaches
the other worker a moment after its SUBACK (one trip through the master), so each test
first waits until a probe crosses (``crossing``).
"""
import os
import signal

from tests.integration.support.common import wait_for
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import (
    client_on, cross_probes, owner, wait_for_children, wait_for_new_pid,
)

NAMES = ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")


class CrossWorkerCase(BrokerTestCase):
    # on_when_up() retries one client id until its worker is back: that is flapping
    # (15 disconnects in 60 s), which these tests are not about.
    config = ("[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"
              "[flapping_detect]\nenable = false\n")

    def setUp(self):
        super().setUp()
        self.master = self.broker.process.pid
        self.procs = wait_for_children(self.master, NAMES)

    def worker_pid(self, slot):
        return self.procs[f"mqttd-worker-{slot}"]

    def on(self, slot, prefix="c", **kwargs):
        """A connected client whose connection worker ``slot`` holds (checked)."""
        return client_on(self, slot, prefix, self.procs, **kwargs)

    def subscribed(self, topic_filter, probe):
        """(a subscriber of ``topic_filter`` on worker 2, a publisher on worker 1), once
        a publish to ``probe`` crosses."""
        sub = self.on(2, "s")
        sub.subscribe(topic_filter, 1)
        publisher = self.on(1, "p")
        self.crossing(publisher, sub, probe)
        return sub, publisher

    def on_when_up(self, slot, prefix):
        """``on(slot)`` once that worker takes clients again (after a restart)."""
        def attempt():
            try:
                return self.on(slot, prefix)
            except AssertionError:
                return None  # not up yet: refused, or taken by the other worker
        return wait_for(attempt, message=f"worker {slot} back", context=self.context)

    def crossing(self, publisher, subscriber, topic):
        cross_probes(publisher, subscriber, topic, self.context)


class PubSubTests(CrossWorkerCase):
    def test_each_qos_crosses_as_on_one_worker(self):
        subs = {granted: self.on(2, f"s{granted}") for granted in (0, 1, 2)}
        publisher = self.on(1, "p")
        for granted, sub in subs.items():
            self.assertEqual(sub.subscribe("cross/t", granted), granted)
            # Announced after cross/t, in order: once this one crosses, so does cross/t.
            sub.subscribe(f"probe/{granted}", 0)
            self.crossing(publisher, sub, f"probe/{granted}")
        payloads = {qos: os.urandom(200) + b"\x00\xff" + bytes([qos]) for qos in (0, 1, 2)}
        for qos, payload in payloads.items():
            publisher.publish("cross/t", payload, qos=qos)
        for granted, sub in subs.items():
            got = [(m.topic, m.payload, m.qos, m.retain) for m in sub.get_messages(3)]
            self.assertEqual(got, [("cross/t", payloads[q], min(q, granted), False)
                                   for q in (0, 1, 2)], f"granted {granted}")
            sub.no_message(0.2)  # once each, not stored and delivered twice

    def test_both_ways(self):
        on1, on2 = self.on(1, "a"), self.on(2, "b")
        on1.subscribe("to/1", 1)
        on2.subscribe("to/2", 1)
        self.crossing(on2, on1, "to/1")
        self.crossing(on1, on2, "to/2")
        on2.publish("to/1", b"from 2", qos=1)
        on1.publish("to/2", b"from 1", qos=1)
        self.assertEqual(on1.get_message().payload, b"from 2")
        self.assertEqual(on2.get_message().payload, b"from 1")

    def test_order_per_publisher_over_200_messages(self):
        sub, publisher = self.subscribed("ord/#", "ord/probe")
        for i in range(200):
            publisher.publish("ord/t", str(i).encode(), qos=i % 2)
        got = [int(m.payload) for m in sub.get_messages(200)]
        self.assertEqual(got, list(range(200)))

    def test_dollar_topics_are_not_matched_by_hash(self):
        sub, publisher = self.subscribed("#", "probe")
        publisher.publish("$SYS/broker/load", b"hidden", qos=1)
        publisher.publish("$internal/x", b"hidden", qos=1)
        publisher.publish("marker", b"seen", qos=1)
        self.assertEqual(sub.get_message().payload, b"seen")
        sub.no_message(0.2)

    def test_unsubscribing_stops_forwarding(self):
        sub, publisher = self.subscribed("un/#", "un/probe")
        sub.unsubscribe("un/#")
        sub.subscribe("other", 1)  # still connected, still subscribed to something
        self.crossing(publisher, sub, "other")  # the unsubscribe went before it
        for i in range(5):
            publisher.publish("un/t", b"late", qos=1)
        sub.no_message(0.5)


class RetainedTests(CrossWorkerCase):
    def synced(self, publisher, watcher):
        """Wait until what ``publisher`` published so far has reached ``watcher``'s
        worker: one publisher's messages cross in order, so a marker after them does."""
        publisher.publish("sync/t", b"sync", qos=1)
        self.assertEqual(watcher.get_message().payload, b"sync")

    def test_set_and_clear_on_one_worker_are_seen_on_the_other(self):
        watcher = self.on(2, "w")
        watcher.subscribe("sync/#", 0)
        publisher = self.on(1, "p")
        self.crossing(publisher, watcher, "sync/probe")
        publisher.publish("ret/x", b"kept", qos=2, retain=True)
        self.synced(publisher, watcher)
        later = self.on(2, "l")
        later.subscribe("ret/#", 1)
        message = later.get_message()
        self.assertEqual((message.topic, message.payload, message.qos, message.retain),
                         ("ret/x", b"kept", 1, True))

        publisher.publish("ret/x", b"", qos=1, retain=True)  # clears it
        self.synced(publisher, watcher)
        after = self.on(2, "a")
        after.subscribe("ret/#", 1)
        local = self.on(2, "m")
        local.publish("ret/marker", b"marker", qos=1)  # the same worker: no wait
        message = after.get_message()
        self.assertEqual((message.payload, message.retain), (b"marker", False),
                         "the cleared retained message was delivered")


    def test_a_client_that_connects_after_the_puback_reads_the_new_value(self):
        """The ack of a retained set waits for the master's echo (``Crossing.hold_ack``),
        so a client handed to the other worker after it reads this value, never the one
        it replaced: each of 100 sets, at once, by a new client of worker 2."""
        publisher = self.on(1, "p")
        for i in range(100):
            publisher.publish("ret/race", b"%d" % i, qos=1, retain=True)  # its PUBACK
            later = self.on(2, f"l{i}-")
            later.subscribe("ret/race", 1)
            self.assertEqual(later.get_message().payload, b"%d" % i, f"set {i}")
            later.disconnect()


class WorkerDeathTests(CrossWorkerCase):
    def test_a_killed_worker_s_interest_is_dropped_and_its_successor_announces_its_own(self):
        sub = self.on(2, "s")
        sub.subscribe("dead/#", 1)
        sub.subscribe("dead/x", 1)
        publisher = self.on(1, "p")
        self.crossing(publisher, sub, "dead/probe")
        victim = self.worker_pid(2)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "worker 2 gone: its 2 subscription filters" in self.broker.output(),
                 message="the master dropping worker 2's interest", context=self.context)
        self.procs = wait_for_new_pid(self.master, NAMES, "mqttd-worker-2", victim)
        fresh = self.on_when_up(2, "fresh")
        fresh.subscribe("new/#", 1)
        self.crossing(publisher, fresh, "new/probe")
        publisher.publish("new/t", b"fresh", qos=1)
        self.assertEqual(fresh.get_message().payload, b"fresh")


class PersistentSessionTests(CrossWorkerCase):
    def test_an_offline_session_queues_what_another_worker_commits(self):
        keeper = self.on(2, "keeper", clean_session=False)
        keeper.subscribe("keep/#", 1)
        publisher = self.on(1, "p")
        self.crossing(publisher, keeper, "keep/probe")
        keeper.disconnect()  # offline: its subscription stays, and so does its interest
        for i in range(5):
            publisher.publish("keep/t", b"%d" % i, qos=1)
        again = self.client(keeper.client_id, clean_session=False)
        got = [m.payload for m in again.get_messages(5)]
        self.assertEqual(got, [b"%d" % i for i in range(5)])

    def test_a_restarted_worker_announces_its_restored_subscriptions(self):
        keeper = self.on(2, "keeper", clean_session=False)
        keeper.subscribe("keep/#", 1)  # its SUBACK waits for the commit of the session
        keeper.disconnect()
        victim = self.worker_pid(2)
        os.kill(victim, signal.SIGKILL)
        self.procs = wait_for_new_pid(self.master, NAMES, "mqttd-worker-2", victim)
        again = self.client(keeper.client_id, clean_session=False)
        self.assertEqual(owner(again.client.socket(), [self.worker_pid(2)]),
                         self.worker_pid(2))
        publisher = self.on(1, "p")
        self.crossing(publisher, again, "keep/probe")  # no new SUBSCRIBE: restored
        publisher.publish("keep/t", b"after the restart", qos=1)
        self.assertEqual(again.get_message().payload, b"after the restart")
