"""brokers.running: every broker started and waited for, and every one stopped at the
end, also when one fails to start or the run inside fails."""
import os
import sys

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

from brokers import running  # noqa: E402


class FakeBroker:
    def __init__(self, name, calls, dies=False):
        self.name, self.calls, self.dies = name, calls, dies

    def start(self):
        self.calls.append(("start", self.name))

    def wait_port(self):
        self.calls.append(("wait_port", self.name))
        if self.dies:
            raise RuntimeError(f"{self.name} never listened")

    def stop(self):
        self.calls.append(("stop", self.name))


class RunningTests(unittest.TestCase):
    def setUp(self):
        self.calls = []

    def brokers(self, dies=()):
        return [FakeBroker(n, self.calls, n in dies) for n in ("a", "b")]

    def test_all_started_then_all_waited_for_then_all_stopped(self):
        with running(self.brokers(), settle=0) as brokers:
            self.calls.append(("run", len(brokers)))
        self.assertEqual(self.calls, [("start", "a"), ("start", "b"), ("wait_port", "a"),
                                      ("wait_port", "b"), ("run", 2), ("stop", "a"),
                                      ("stop", "b")])

    def test_a_failed_run_still_stops_every_broker(self):
        with self.assertRaises(ValueError):
            with running(self.brokers(), settle=0):
                raise ValueError("the load failed")
        self.assertEqual(self.calls[-2:], [("stop", "a"), ("stop", "b")])

    def test_a_broker_that_never_listens_stops_them_all_and_nothing_runs(self):
        ran = []
        with self.assertRaises(RuntimeError):
            with running(self.brokers(dies=("a",)), settle=0):
                ran.append(True)
        self.assertEqual(ran, [])
        self.assertEqual(self.calls[-2:], [("stop", "a"), ("stop", "b")])
