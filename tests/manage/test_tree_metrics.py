"""The tree's figures gathered in the master: children's snapshots summed per series,
counters that never go backwards across restarts, gauges only of children heard from."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.snapshots import count_and_sum
from mqttd.manage.tree_metrics import STALE_AFTER, TreeMetrics, snapshot
from mqttd.metrics import Metrics


def _values(tree):
    """{(name, labels as a sorted tuple): value} of every sample of ``tree``."""
    return {(family.name, tuple(sorted(labels.items()))): value
            for family in tree.families() for labels, value in family.samples}


def _total(tree, name, **labels):
    return _values(tree)[(name, tuple(sorted(labels.items())))]


class SnapshotTests(unittest.TestCase):
    def test_only_non_zero_series_with_labels_as_strings(self):
        metrics = Metrics()
        metrics.mqtt_publish_received = 3
        metrics.tree_forward_dropped[1] += 2
        metrics.webhook_rejected["overload"] += 0
        self.assertEqual(snapshot(metrics, "r1"), {
            "run": "r1",
            # Three received, none settled: pending, derived from the counters.
            "values": {"mqtt_publish_received": 3, "tree_forward_dropped": {"1": 2},
                       "mqtt_publish_pending": 3}})


class TreeMetricsTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.master = Metrics()
        self.tree = TreeMetrics(self.clock, self.master, "mqttd-master")

    def child(self, name, run, **values):
        metrics = Metrics()
        for key, value in values.items():
            if isinstance(value, dict):
                getattr(metrics, key).update(value)
            else:
                setattr(metrics, key, value)
        self.tree.report(name, snapshot(metrics, run))

    def test_two_workers_and_the_ingest_child_are_summed_per_series(self):
        self.master.edge_admitted = 7
        self.master.edge_gate_refused["bad token"] = 2
        self.child("mqttd-worker-1", "a", mqtt_publish_received=10, mqtt_connections_open=3,
                   webhook_rejected={"ack timeout": 1})
        self.child("mqttd-worker-2", "b", mqtt_publish_received=5, mqtt_connections_open=2,
                   webhook_rejected={"ack timeout": 2, "overload": 4})
        self.child("mqttd-ingest", "c", ingest_rows_committed=15)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 15)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 5)
        self.assertEqual(_total(self.tree, "ingest_rows_committed"), 15)
        self.assertEqual(_total(self.tree, "edge_admitted"), 7)
        self.assertEqual(_total(self.tree, "edge_gate_refused", reason="bad token"), 2)
        self.assertEqual(_total(self.tree, "webhook_rejected", reason="ack timeout"), 3)
        self.assertEqual(_total(self.tree, "webhook_rejected", reason="overload"), 4)
        # Connections by worker, beside the sum.
        self.assertEqual(_total(self.tree, "mqtt_connections_open_by_process",
                                process="mqttd-worker-1"), 3)
        self.assertEqual(_total(self.tree, "mqtt_connections_open_by_process",
                                process="mqttd-worker-2"), 2)
        self.assertEqual(_total(self.tree, "mqtt_connections_open_by_process",
                                process="mqttd-master"), 0)

    def test_a_newer_snapshot_replaces_the_last_one_of_the_same_run(self):
        self.child("mqttd-worker-1", "a", mqtt_publish_received=10)
        self.child("mqttd-worker-1", "a", mqtt_publish_received=12)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 12)

    def test_a_restarted_child_keeps_its_dead_runs_counters(self):
        self.child("mqttd-worker-1", "a", mqtt_publish_received=10, mqtt_connections_open=4,
                   webhook_rejected={"ack timeout": 2})
        self.tree.gone("mqttd-worker-1")
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 10)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 0)  # it holds none
        self.assertEqual(_total(self.tree, "webhook_rejected", reason="ack timeout"), 2)
        self.tree.started("mqttd-worker-1")
        self.child("mqttd-worker-1", "b", mqtt_publish_received=1, mqtt_connections_open=1)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 11)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 1)
        self.assertEqual(_total(self.tree, "webhook_rejected", reason="ack timeout"), 2)
        self.assertEqual(_total(self.tree, "mqtt_publish_received_by_process",
                                process="mqttd-worker-1"), 11)

    def test_a_new_run_reporting_ends_the_old_one_without_a_gone(self):
        self.child("mqttd-ingest", "a", ingest_rows_committed=100)
        self.child("mqttd-ingest", "b", ingest_rows_committed=3)
        self.assertEqual(_total(self.tree, "ingest_rows_committed"), 103)

    def test_a_late_report_of_an_ended_run_adds_only_its_growth(self):
        self.child("mqttd-worker-1", "a", mqtt_publish_received=10, mqtt_connections_open=4)
        self.tree.gone("mqttd-worker-1")
        self.child("mqttd-worker-1", "b", mqtt_publish_received=1)
        self.child("mqttd-worker-1", "a", mqtt_publish_received=13, mqtt_connections_open=9)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 14)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 0)  # not its gauges
        self.child("mqttd-worker-1", "a", mqtt_publish_received=13)  # nothing new
        self.tree.gone("mqttd-worker-1")
        self.tree.gone("mqttd-worker-1")  # told twice (exit and a lost channel)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 14)

    def test_counters_never_go_backwards_over_many_restarts(self):
        seen = 0
        for run in range(10):
            for count in (5, 9):
                self.child("mqttd-worker-2", f"run{run}", mqtt_publish_received=count)
                total = _total(self.tree, "mqtt_publish_received")
                self.assertGreaterEqual(total, seen)
                seen = total
            if run % 2:
                self.tree.gone("mqttd-worker-2")
        self.assertEqual(seen, 90)

    def test_a_silent_child_loses_its_gauges_keeps_its_counters_and_is_reported(self):
        self.tree.started("mqttd-worker-1")
        self.child("mqttd-worker-1", "a", mqtt_publish_received=10, mqtt_connections_open=4)
        self.clock.advance(5.0)
        self.assertIsNone(self.tree.stale("mqttd-worker-1"))
        self.assertEqual(_total(self.tree, "tree_child_reporting", process="mqttd-worker-1"), 1)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 4)
        self.clock.advance(0.5)
        self.assertEqual(self.tree.stale("mqttd-worker-1"), 5.5)
        self.assertEqual(_total(self.tree, "tree_child_reporting", process="mqttd-worker-1"), 0)
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 0)
        self.assertEqual(_total(self.tree, "mqtt_publish_received"), 10)
        self.child("mqttd-worker-1", "a", mqtt_publish_received=11, mqtt_connections_open=4)
        self.assertIsNone(self.tree.stale("mqttd-worker-1"))
        self.assertEqual(_total(self.tree, "mqtt_connections_open"), 4)

    def test_a_child_started_and_never_heard_from_goes_stale(self):
        self.tree.started("mqttd-ingest")
        self.clock.advance(5.0)
        self.assertIsNone(self.tree.stale("mqttd-ingest"))
        self.clock.advance(1.0)
        self.assertEqual(self.tree.stale("mqttd-ingest"), 6.0)
        self.tree.gone("mqttd-ingest")
        self.assertIsNone(self.tree.stale("mqttd-ingest"))  # down, not silent
        self.assertEqual(_total(self.tree, "tree_child_reporting", process="mqttd-ingest"), 0)

    def test_malformed_snapshots_and_unknown_names_are_ignored(self):
        self.tree.report("mqttd-worker-1", "nonsense")
        self.tree.report("mqttd-worker-1", {"run": 3, "values": {}})
        self.tree.report("mqttd-worker-1", {"run": "a", "values": {
            "no_such_series": 5, "mqtt_publish_received": "many",
            "webhook_rejected": 3, "mqtt_dropped": {"slow": True, "offline": 2},
            "mqtt_delivered": 4}})
        values = _values(self.tree)
        self.assertEqual(values[("mqtt_publish_received", ())], 0)
        self.assertEqual(values[("mqtt_delivered", ())], 4)
        self.assertEqual(values[("mqtt_dropped", (("reason", "offline"),))], 2)
        self.assertNotIn(("mqtt_dropped", (("reason", "slow"),)), values)
        self.assertFalse([key for key in values if key[0] == "webhook_rejected"])

    def test_the_single_process_is_its_own_registry_with_no_children(self):
        metrics = Metrics()
        metrics.mqtt_connections_open = 2
        metrics.tree_forward_dropped[0] += 1
        tree = TreeMetrics(self.clock, metrics, "mqttd")
        self.assertEqual(_total(tree, "mqtt_connections_open"), 2)
        self.assertEqual(_total(tree, "mqtt_connections_open_by_process", process="mqttd"), 2)
        self.assertEqual(_total(tree, "tree_forward_dropped", qos="0"), 1)
        self.assertNotIn("tree_child_reporting", [f.name for f in tree.families()])


def _histogram(tree, name):
    """(bounds, counts, sum) of histogram ``name`` in ``tree``'s families."""
    (family,) = [family for family in tree.families() if family.name == name]
    ((_, value),) = family.samples
    return value


class HistogramTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.master = Metrics()
        self.tree = TreeMetrics(self.clock, self.master, "mqttd-master")

    def test_bucket_counts_are_summed_across_processes_and_kept_across_restarts(self):
        one, two = Metrics(), Metrics()
        for seconds in (0.0004, 0.003, 0.003, 7.0):
            one.webhook_request_seconds.observe(seconds)
        for seconds in (0.003, 100.0):
            two.webhook_request_seconds.observe(seconds)
        self.tree.report("mqttd-worker-1", snapshot(one, "a"))
        self.tree.report("mqttd-worker-2", snapshot(two, "b"))
        bounds, counts, total = _histogram(self.tree, "webhook_request_seconds")
        self.assertEqual(counts[0], 1)  # <= 0.5 ms
        self.assertEqual(counts[bounds.index(0.005)], 3)  # 2.5 ms < x <= 5 ms, both workers
        self.assertEqual(counts[bounds.index(10.0)], 1)
        self.assertEqual(counts[-1], 1)  # above every bound
        self.assertEqual(sum(counts), 6)
        self.assertAlmostEqual(total, 0.0004 + 0.009 + 107.0)
        self.tree.gone("mqttd-worker-1")
        self.tree.started("mqttd-worker-1")
        self.tree.report("mqttd-worker-1", snapshot(Metrics(), "c"))
        self.assertEqual(sum(_histogram(self.tree, "webhook_request_seconds")[1]), 6)

    def test_a_histogram_of_the_wrong_shape_is_left_out(self):
        self.tree.report("mqttd-ingest", {"run": "a", "values": {
            "ingest_commit_seconds": {"counts": [1, 2], "sum": 3.0}}})
        self.assertEqual(sum(_histogram(self.tree, "ingest_commit_seconds")[1]), 0)

    def test_by_process_gives_each_processes_figures_for_the_rules(self):
        worker = Metrics()
        worker.webhook_submitted = 9
        worker.webhook_pending = 4
        worker.webhook_request_seconds.observe(0.2)
        self.tree.report("mqttd-worker-1", snapshot(worker, "a"))
        figures = self.tree.by_process()
        self.assertEqual(set(figures), {"mqttd-master", "mqttd-worker-1"})
        mine = figures["mqttd-worker-1"]
        self.assertEqual(mine[("webhook_submitted", None)], 9)
        self.assertEqual(mine[("webhook_pending", None)], 4)
        self.assertEqual(count_and_sum(mine, "webhook_request_seconds"), (1, 0.2))

    def test_details_are_read_from_live_children_only(self):
        self.tree.report("mqttd-worker-1", snapshot(Metrics(), "a", {"gaps": [1]}))
        self.tree.report("mqttd-worker-2", snapshot(Metrics(), "b", {"gaps": [2]}))
        self.assertEqual(self.tree.details("gaps"), [("mqttd-worker-1", [1]),
                                                     ("mqttd-worker-2", [2])])
        self.tree.gone("mqttd-worker-2")
        self.assertEqual(self.tree.details("gaps"), [("mqttd-worker-1", [1])])


class IdentityTests(unittest.TestCase):
    """received = stored + not stored + pending, and submitted = committed + pending +
    rejected, over the whole tree: also when a worker dies with messages in flight."""

    def setUp(self):
        self.clock = Clock()
        self.tree = TreeMetrics(self.clock, Metrics(), "mqttd-master")

    def worker(self, name, run, received, stored, not_stored=0):
        metrics = Metrics()
        metrics.mqtt_publish_received = received
        metrics.mqtt_publish_stored = stored
        metrics.mqtt_publish_not_stored = not_stored
        metrics.webhook_submitted = received
        metrics.webhook_committed = stored
        if not_stored:
            metrics.webhook_rejected["ack timeout"] = not_stored
        metrics.webhook_pending = received - stored - not_stored
        self.tree.report(name, snapshot(metrics, run))

    def assertHolds(self):
        received = _total(self.tree, "mqtt_publish_received")
        stored = _total(self.tree, "mqtt_publish_stored")
        not_stored = _total(self.tree, "mqtt_publish_not_stored")
        pending = _total(self.tree, "mqtt_publish_pending")
        self.assertEqual(received, stored + not_stored + pending)
        rejected = sum(value for (name, _), value in _values(self.tree).items()
                       if name == "webhook_rejected")
        self.assertEqual(_total(self.tree, "webhook_submitted"),
                         _total(self.tree, "webhook_committed") + rejected
                         + _total(self.tree, "webhook_pending"))
        return received, stored, not_stored, pending

    def test_it_holds_over_live_workers(self):
        self.worker("mqttd-worker-1", "a", 10, 6, 1)
        self.worker("mqttd-worker-2", "b", 5, 5)
        self.assertEqual(self.assertHolds(), (15, 11, 1, 3))

    def test_a_killed_workers_messages_in_flight_wait_then_count_as_not_stored(self):
        self.worker("mqttd-worker-1", "a", 10, 6)
        self.tree.gone("mqttd-worker-1")
        self.clock.advance(STALE_AFTER)
        self.assertEqual(self.assertHolds(), (10, 6, 0, 4))  # still awaiting a late report
        self.clock.advance(0.1)
        self.assertEqual(self.assertHolds(), (10, 6, 4, 0))
        self.assertEqual(_total(self.tree, "webhook_rejected", reason="worker exited"), 4)
        self.worker("mqttd-worker-1", "a", 10, 10)  # far too late: changes nothing
        self.assertEqual(self.assertHolds(), (10, 6, 4, 0))

    def test_a_clean_stops_late_report_settles_what_was_in_flight(self):
        self.worker("mqttd-worker-1", "a", 10, 6)
        self.tree.gone("mqttd-worker-1")  # the exit seen before its last report
        self.clock.advance(0.5)
        self.worker("mqttd-worker-1", "a", 10, 10)
        self.clock.advance(60)
        self.assertEqual(self.assertHolds(), (10, 10, 0, 0))

    def test_many_quick_restarts_keep_it_and_never_go_backwards(self):
        seen = 0
        for run in range(8):
            self.worker("mqttd-worker-1", f"r{run}", 10, 7)
            self.tree.gone("mqttd-worker-1")
            _, _, not_stored, _ = self.assertHolds()
            self.assertGreaterEqual(not_stored, seen)
            seen = not_stored
        self.clock.advance(STALE_AFTER + 1)
        self.assertEqual(self.assertHolds(), (80, 56, 24, 0))
