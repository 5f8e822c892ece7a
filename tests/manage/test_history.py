"""Counters over the last minute, hour and day, on a Clock."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.history import CounterHistory


class HistoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.totals = {"limits.max_conn_per_ip": 0}
        self.history = CounterHistory(self.clock, lambda: dict(self.totals))
        self.history.startService()
        self.addCleanup(self.history.stopService)

    def run_for(self, seconds, per_step=0, key="limits.max_conn_per_ip"):
        for _ in range(int(seconds // 10)):
            self.totals[key] = self.totals.get(key, 0) + per_step
            self.clock.advance(10)

    def test_the_last_minute_is_the_growth_since_a_sample_a_minute_old(self):
        self.run_for(600, per_step=1)
        grown, covered = self.history.since(60)
        self.assertEqual(grown, {"limits.max_conn_per_ip": 6})
        self.assertEqual(covered, 60.0)
        self.totals["gate: bad token"] = 4  # grows now: counted at once
        grown, _ = self.history.since(60)
        self.assertEqual(grown["gate: bad token"], 4)

    def test_hour_and_day_from_the_coarse_samples(self):
        self.run_for(7200, per_step=1)
        self.assertEqual(self.history.since(3600)[0], {"limits.max_conn_per_ip": 360})
        grown, covered = self.history.since(86400)  # younger than a day: since the start
        self.assertEqual((grown, covered), ({"limits.max_conn_per_ip": 720}, 7200.0))
        self.run_for(86400 * 2, per_step=0)
        self.assertEqual(self.history.since(86400)[0], {})

    def test_nothing_grew_nothing_said(self):
        self.run_for(120)
        self.assertEqual(self.history.since(60)[0], {})

    def test_a_read_that_fails_is_logged_and_the_loop_goes_on(self):
        calls = []

        def read():
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("tree gone")
            return {}
        history = CounterHistory(self.clock, read)
        history.startService()
        self.addCleanup(history.stopService)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
