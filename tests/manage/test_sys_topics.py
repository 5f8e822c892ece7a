"""The $SYS/broker topics: mosquitto's names and formats from the tree's figures, the
load averages by mosquitto's formula, and a broker that retains them, stores none of
them and delivers only those that changed."""
import math

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.codec import Subscribe
from mqttd.manage.sys_topics import SysTree, publish_sys, totals
from mqttd.manage.tree_metrics import TreeMetrics, snapshot
from mqttd.metrics import Metrics
from tests.support.broker import Harness, publishes


class SysTreeTests(unittest.TestCase):
    def test_mosquittos_topics_from_the_trees_sums(self):
        clock = Clock()
        sys = SysTree(clock, version="1.2.3")
        clock.advance(42.7)
        tree = TreeMetrics(clock, Metrics(), "mqttd-master")
        for slot, (connected, received) in enumerate(((3, 40), (2, 2)), 1):
            worker = Metrics()
            worker.mqtt_connections_open = connected
            worker.mqtt_publish_received = received
            worker.mqtt_delivered = 7
            worker.mqtt_dropped["slow"] = 1
            tree.report(f"mqttd-worker-{slot}", snapshot(worker, str(slot)))
        values = sys.values(totals(tree.families()))
        self.assertEqual(values["$SYS/broker/clients/connected"], "5")
        self.assertEqual(values["$SYS/broker/clients/maximum"], "5")
        self.assertEqual(values["$SYS/broker/messages/received"], "42")
        self.assertEqual(values["$SYS/broker/publish/messages/received"], "42")
        self.assertEqual(values["$SYS/broker/messages/sent"], "14")
        self.assertEqual(values["$SYS/broker/publish/messages/dropped"], "2")
        self.assertEqual(values["$SYS/broker/uptime"], "42 seconds")
        self.assertEqual(values["$SYS/broker/version"], "mqttd version 1.2.3")
        self.assertNotIn("$SYS/broker/load/messages/received/1min", values)  # one interval first

    def test_loads_are_mosquittos_smoothed_rates_per_minute(self):
        clock = Clock()
        sys = SysTree(clock, version="x")
        sys.values({"mqtt_publish_received": 0, "mqtt_connections_open": 4})
        clock.advance(10)
        values = sys.values({"mqtt_publish_received": 100, "mqtt_connections_open": 1})
        rate = 100 * 60 / 10  # 600 a minute over the interval
        loads = {}
        for minutes in (1, 5, 15):
            loads[minutes] = rate + math.exp(-10 / (60 * minutes)) * (0 - rate)
            self.assertEqual(values[f"$SYS/broker/load/messages/received/{minutes}min"],
                             f"{loads[minutes]:.2f}")
        self.assertEqual(values["$SYS/broker/load/connections/1min"], "0.00")
        self.assertEqual(values["$SYS/broker/clients/maximum"], "4")  # the most seen
        clock.advance(10)
        values = sys.values({"mqtt_publish_received": 100})  # nothing new: it decays
        self.assertEqual(values["$SYS/broker/load/messages/received/1min"],
                         f"{math.exp(-10 / 60) * loads[1]:.2f}")


class PublishSysTests(unittest.TestCase):
    def test_retained_delivered_when_changed_and_stored_nowhere(self):
        h = Harness()
        sub = h.subscriber("$SYS/broker/#")
        everything = h.subscriber("#", client_id="all")
        publish_sys(h.broker, {"$SYS/broker/clients/connected": "2",
                               "$SYS/broker/uptime": "10 seconds"})
        got = {p.topic: p.payload for p in publishes(sub.received())}
        self.assertEqual(got, {"$SYS/broker/clients/connected": b"2",
                               "$SYS/broker/uptime": b"10 seconds"})
        publish_sys(h.broker, {"$SYS/broker/clients/connected": "2",
                               "$SYS/broker/uptime": "20 seconds"})
        self.assertEqual([(p.topic, p.payload) for p in publishes(sub.received())],
                         [("$SYS/broker/uptime", b"20 seconds")])  # only what changed
        self.assertEqual(publishes(everything.received()), [])  # "#" matches no $ topic
        self.assertEqual(list(h.store.messages), [])  # no row
        self.assertEqual(h.broker.metrics.manage_sys_published, 3)
        late = h.client("late")
        late.send(Subscribe(1, (("$SYS/broker/clients/connected", 0),)))
        (retained,) = publishes(late.received())
        self.assertEqual((retained.payload, retained.retain), (b"2", True))

    def test_anything_but_sys_text_is_ignored(self):
        h = Harness()
        sub = h.subscriber("#")
        publish_sys(h.broker, {"other/topic": "1", "$SYS/x": 3, "$SYS/y": ""})
        publish_sys(h.broker, ["not", "a", "dict"])
        self.assertEqual(publishes(sub.received()), [])
        self.assertEqual(h.broker.metrics.manage_sys_published, 0)
