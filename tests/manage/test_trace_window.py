"""The window of recent trace events: bounded per client, in clients (LRU) and in bytes."""
import json

from twisted.trial import unittest

from mqttd.manage.trace_window import CLIENT_OVERHEAD, EVENT_OVERHEAD, RecentEvents
from mqttd.metrics import Metrics


def line(n, size=100):
    text = json.dumps({"n": n, "pad": "x" * size}) + "\n"
    return text


class WindowTests(unittest.TestCase):
    def test_a_clients_events_in_order_as_dicts(self):
        window = RecentEvents(10, 1 << 20, 8192)
        for n in range(3):
            window.add("a", line(n))
        self.assertEqual([e["n"] for e in window.recent("a")], [0, 1, 2])
        self.assertEqual(window.recent("nobody"), [])

    def test_per_client_bytes_drop_its_oldest_events(self):
        window = RecentEvents(10, 1 << 20, 1000)
        for n in range(20):
            window.add("a", line(n))
        kept = [e["n"] for e in window.recent("a")]
        self.assertEqual(kept, list(range(20 - len(kept), 20)))
        cost = len(line(0)) + EVENT_OVERHEAD
        self.assertEqual(len(kept), (1000 - CLIENT_OVERHEAD - 1) // cost)
        self.assertLessEqual(window.size, 1000)

    def test_past_max_clients_the_least_recently_written_goes(self):
        metrics = Metrics()
        firsts = []
        window = RecentEvents(2, 1 << 20, 8192, metrics, lambda: firsts.append(1))
        window.add("a", line(0))
        window.add("b", line(1))
        window.add("a", line(2))  # a is now the most recent
        window.add("c", line(3))
        window.add("d", line(4))
        self.assertEqual(window.recent("b"), [])
        self.assertEqual(window.recent("a"), [])
        self.assertEqual([e["n"] for e in window.recent("d")], [4])
        self.assertEqual(len(window), 2)
        self.assertEqual((metrics.trace_window_evicted, metrics.trace_window_clients), (2, 2))
        self.assertEqual(firsts, [1])  # told once

    def test_past_max_bytes_clients_go_oldest_first(self):
        metrics = Metrics()
        window = RecentEvents(1000, 3000, 8192, metrics)
        for n in range(30):
            window.add(f"c{n}", line(n))
        self.assertLessEqual(window.size, 3000)
        self.assertEqual(metrics.trace_window_bytes, window.size)
        self.assertEqual([e["n"] for e in window.recent("c29")], [29])
        self.assertEqual(window.recent("c0"), [])
        self.assertEqual(len(window) + metrics.trace_window_evicted, 30)

    def test_a_window_of_no_clients_keeps_nothing(self):
        window = RecentEvents(0, 1 << 20, 8192)
        window.add("a", line(0))
        self.assertEqual((len(window), window.size), (0, 0))
