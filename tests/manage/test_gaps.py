"""Per-device gap detection on a Clock: a device is listed once it is silent past
gap_factor times its median interval, and not a moment before; bursts are one sample;
memory is bounded by gap_max_devices."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.gaps import BURST, FORGET_AFTER, MIN_SAMPLES, GapWatch, merge_gaps
from mqttd.metrics import Metrics
from mqttd.store.sink import Message
from tests.support.logs import capture_logs


class GapTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.metrics = Metrics()
        self.watch = GapWatch(self.clock, 3.0, 100, self.metrics, "mqttd-worker-1")

    def every(self, key, interval, times):
        for _ in range(times):
            self.watch.seen(key, self.clock.seconds())
            self.clock.advance(interval)
            self.watch.check()

    def listed(self):
        return [(entry["client_id"], entry["account"]) for entry in self.watch.gaps()]

    def test_listed_after_its_factor_times_its_median_and_not_before(self):
        self.every("dev-1", 10.0, MIN_SAMPLES + 1)  # publishes every 10 s
        last = self.clock.seconds() - 10.0
        # Silent since ``last``: factor 3 x 10 s = 30 s.
        self.clock.advance(30.0 - 10.0 - 0.001)
        self.watch.check()
        self.assertEqual(self.watch.gaps(), [])
        self.assertEqual(self.metrics.manage_gap_devices, 0)
        self.clock.advance(0.001)
        events = capture_logs(self)
        self.watch.check()
        (entry,) = self.watch.gaps()
        self.assertEqual(entry, {"client_id": "dev-1", "account": None, "last_seen": last,
                                 "silent_for": 30.0, "usual_interval": 10.0,
                                 "process": "mqttd-worker-1"})
        self.assertEqual(self.metrics.manage_gap_devices, 1)
        (line,) = [e for e in events if "went silent" in e.get("log_format", "")]
        self.assertIn("dev-1 (silent 30 s, usually every 10.0 s)", line["shown"])
        self.watch.check()  # still silent: logged once
        self.assertEqual(len([e for e in events if "went silent" in e.get("log_format", "")]), 1)

    def test_publishing_again_takes_it_off_the_list_and_it_is_judged_again(self):
        self.every("dev-1", 10.0, MIN_SAMPLES + 1)
        self.clock.advance(40.0)
        self.watch.check()
        self.assertEqual(self.listed(), [("dev-1", None)])
        events = capture_logs(self)
        self.every("dev-1", 10.0, 2)
        self.assertEqual(self.listed(), [])
        self.assertEqual(self.metrics.manage_gap_devices, 0)
        (back,) = [e for e in events if "publish again" in e.get("log_format", "")]
        self.assertEqual((back["n"], back["shown"]), (1, "dev-1 (after 50 s)"))
        self.clock.advance(40.0)  # the long interval is one of nine: the median holds
        self.watch.check()
        self.assertEqual(self.listed(), [("dev-1", None)])

    def test_a_burst_is_one_sample(self):
        for _ in range(MIN_SAMPLES + 1):
            for _ in range(10):  # ten messages within a second: one sample
                self.watch.seen("dev-1", self.clock.seconds())
                self.clock.advance(BURST / 20)
            self.clock.advance(60.0 - BURST / 2)
        self.watch.check()
        self.clock.advance(100.0)  # 160 s after its last burst: not 3 x 60 s yet
        self.watch.check()
        self.assertEqual(self.listed(), [])
        self.clock.advance(30.0)
        self.watch.check()
        (entry,) = self.watch.gaps()
        self.assertAlmostEqual(entry["usual_interval"], 60.0, places=3)

    def test_a_device_with_too_short_a_history_is_not_judged(self):
        self.every("dev-1", 10.0, MIN_SAMPLES)  # MIN_SAMPLES - 1 intervals
        self.clock.advance(1000.0)
        self.watch.check()
        self.assertEqual(self.listed(), [])

    def test_memory_is_bounded_the_one_silent_longest_forgotten_first(self):
        watch = GapWatch(self.clock, 3.0, 3, self.metrics)
        for name in ("a", "b", "c"):
            watch.seen(name, self.clock.seconds())
            self.clock.advance(BURST)
        watch.seen("a", self.clock.seconds())  # a sampled again: b is the oldest now
        watch.seen("d", self.clock.seconds())
        self.assertEqual(self.metrics.manage_gap_devices_tracked, 3)
        self.assertEqual(self.metrics.manage_gap_devices_dropped, 1)
        watch.seen("b", self.clock.seconds())  # new again: c goes
        self.assertEqual(self.metrics.manage_gap_devices_dropped, 2)

    def test_a_device_silent_for_a_week_is_forgotten(self):
        self.every("dev-1", 10.0, MIN_SAMPLES + 1)
        self.clock.advance(40.0)
        self.watch.check()
        self.assertEqual(self.metrics.manage_gap_devices, 1)
        self.clock.advance(FORGET_AFTER)
        self.watch.check()
        self.assertEqual((self.metrics.manage_gap_devices,
                          self.metrics.manage_gap_devices_tracked), (0, 0))

    def test_the_submit_it_wraps_keys_devices_by_account_and_spares_the_exempt(self):
        watch = GapWatch(self.clock, 3.0, 100, self.metrics, exempt=("$mqttd-canary",))
        submitted = []
        submit = watch.observing(lambda *args: submitted.append(args))
        for _ in range(MIN_SAMPLES + 1):
            now = self.clock.seconds()
            for client_id, topic in (("dev-1", "t"), ("dev-1", "$a/acme/t"),
                                     ("$mqttd-canary", "$mqttd/canary")):
                submit(Message("k", client_id, None, topic, b"", 1, False, now), None, 1)
            self.clock.advance(10.0)
        self.assertEqual(len(submitted), 3 * (MIN_SAMPLES + 1))
        self.assertEqual(self.metrics.manage_gap_devices_tracked, 2)
        self.clock.advance(30.0)
        watch.check()
        self.assertEqual(sorted((e["client_id"], e["account"] or "") for e in watch.gaps()),
                         [("dev-1", ""), ("dev-1", "acme")])

    def test_a_long_client_id_is_cut_in_the_listing(self):
        long_id = "d" * 65535
        self.every(long_id, 10.0, MIN_SAMPLES + 1)
        self.clock.advance(40.0)
        self.watch.check()
        (entry,) = self.watch.gaps()
        self.assertEqual(entry["client_id"], "d" * 200 + "...")

    def test_lists_of_processes_merge_most_recently_quiet_first(self):
        merged = merge_gaps([[{"client_id": "a", "last_seen": 5.0}],
                             [{"client_id": "b", "last_seen": 9.0}, "junk"]])
        self.assertEqual([entry["client_id"] for entry in merged], ["b", "a"])
