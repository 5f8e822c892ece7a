"""Connects per address over the last minute, on a Clock: counted, forgotten as the
window moves on, bounded in addresses."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.connect_rates import ConnectRates


class ConnectRatesTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.rates = ConnectRates(self.clock, window=60.0, step=10.0, max_addresses=3)

    def test_the_busiest_first_with_their_rate(self):
        self.clock.advance(60)
        for _ in range(30):
            self.rates.seen("10.0.0.7")
        for _ in range(6):
            self.rates.seen("10.0.0.1")
        top, others = self.rates.top(5)
        self.assertEqual([(a, n) for a, n, _ in top], [("10.0.0.7", 30), ("10.0.0.1", 6)])
        self.assertAlmostEqual(top[0][2], 30 / 50.0)  # 5 whole buckets and this one's start
        self.assertEqual(others, 0)

    def test_connects_older_than_the_window_are_forgotten(self):
        self.rates.seen("10.0.0.7")
        self.clock.advance(35)
        self.rates.seen("10.0.0.7")
        self.clock.advance(30)
        self.assertEqual(self.rates.totals()[0], {"10.0.0.7": 1})
        self.clock.advance(30)
        self.assertEqual(self.rates.totals()[0], {})
        self.rates.seen("10.0.0.8")  # a quiet window after a busy one
        self.assertEqual(self.rates.totals()[0], {"10.0.0.8": 1})

    def test_a_young_window_covers_only_the_time_since_start(self):
        self.clock.advance(5)
        self.rates.seen("10.0.0.7")
        self.assertAlmostEqual(self.rates.totals()[2], 5.0)

    def test_past_max_addresses_new_ones_are_summed_apart(self):
        for n in range(10):
            self.rates.seen(f"10.0.0.{n}")
        self.rates.seen("10.0.0.0")  # counted already: still counted one by one
        totals, others, _ = self.rates.totals()
        self.assertEqual(totals, {"10.0.0.0": 2, "10.0.0.1": 1, "10.0.0.2": 1})
        self.assertEqual(others, 7)
        self.clock.advance(10)  # a new bucket has room again
        self.rates.seen("10.0.0.9")
        self.assertEqual(self.rates.totals()[0]["10.0.0.9"], 1)
