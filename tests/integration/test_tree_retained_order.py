"""Retained messages are the same from every worker of the real tree (``server.workers =
2``), even when clients of both workers set one topic at the same moment: round after
round, a publisher on each worker sends its retained value at once, and a new
subscription on each worker then gets the same retained message, one of that round's.

Where each client landed is checked from /proc (``owner``). Before the master ordered
retained values, each worker kept the value it applied last, so two sets routed within
one trip of each other left each worker with the other's value, for good.
"""
import queue
import time

from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import client_on, wait_for_children

NAMES = ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")
MARKER = "marker/end"
ROUNDS = 60
SETTLE = 5.0  # seconds for both workers to agree after a round (a few ms when they do)


class SameRetainedEverywhereTests(BrokerTestCase):
    config = "[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"

    def setUp(self):
        super().setUp()
        self.procs = wait_for_children(self.broker.process.pid, NAMES)
        marker = self.client()
        marker.publish(MARKER, b"end", qos=1, retain=True)

    def on(self, slot, prefix):
        return client_on(self, slot, prefix, self.procs)

    def retained(self, watcher, topic):
        """The retained payload a new subscription of ``watcher`` to ``topic`` gets
        (None: none). A second subscription, to a topic always retained, comes after:
        its retained message marks the end of the first one's."""
        watcher.subscribe(topic, 1)
        watcher.subscribe(MARKER, 1)
        payload = None
        try:
            while True:
                message = watcher.get_message()
                if message.retain and message.topic == MARKER:
                    return payload
                if message.retain:
                    payload = message.payload
        finally:
            watcher.unsubscribe(topic)
            watcher.unsubscribe(MARKER)
            while True:  # live copies of what is published meanwhile: not retained ones
                try:
                    watcher.messages.get_nowait()
                except queue.Empty:
                    break

    def agreed(self, watchers, topic, allowed):
        """What every watcher's new subscription gets once they all agree (within
        ``SETTLE``); fails naming what each got if they do not."""
        deadline = time.monotonic() + SETTLE
        while True:
            got = {slot: self.retained(w, topic) for slot, w in watchers.items()}
            if got[1] == got[2] and got[1] in allowed:
                return got[1]
            if time.monotonic() >= deadline:
                self.fail(f"the workers' retained {topic!r} differ, or are stale: {got} "
                          f"(allowed {allowed})\n{self.context()}")
            time.sleep(0.05)

    def test_two_workers_setting_one_topic_at_once_agree(self):
        publishers = {slot: self.on(slot, "p") for slot in (1, 2)}
        watchers = {slot: self.on(slot, "w") for slot in (1, 2)}
        topic = "race/t"
        for n in range(ROUNDS):
            values = {slot: b"%d-%d" % (slot, n) for slot in (1, 2)}
            sent = [publishers[slot].client.publish(topic, values[slot], 1, True)
                    for slot in (1, 2)]  # one right after the other: nothing between
            for info in sent:
                info.wait_for_publish(10)
                self.assertTrue(info.is_published(), f"round {n}: not acknowledged")
            self.agreed(watchers, topic, set(values.values()))
        # And new clients, not only new subscriptions, on each worker get it too.
        last = self.agreed(watchers, topic, {b"1-%d" % n, b"2-%d" % n})
        fresh = {slot: self.on(slot, "f") for slot in (1, 2)}
        self.assertEqual({slot: self.retained(c, topic) for slot, c in fresh.items()},
                         {1: last, 2: last})
        # Each worker said "loaded" as it started, and the master knew what that meant.
        self.assertNotIn("unknown message", self.broker.output())

    def test_a_set_and_a_clear_at_once_agree(self):
        publishers = {slot: self.on(slot, "p") for slot in (1, 2)}
        watchers = {slot: self.on(slot, "w") for slot in (1, 2)}
        topic = "race/c"
        for n in range(ROUNDS // 2):
            publishers[n % 2 + 1].publish(topic, b"before", qos=1, retain=True)
            self.agreed(watchers, topic, {b"before"})
            setter, clearer = (1, 2) if n % 2 else (2, 1)
            sent = [publishers[setter].client.publish(topic, b"set-%d" % n, 1, True),
                    publishers[clearer].client.publish(topic, b"", 1, True)]
            for info in sent:
                info.wait_for_publish(10)
                self.assertTrue(info.is_published(), f"round {n}: not acknowledged")
            self.agreed(watchers, topic, {b"set-%d" % n, None})
