"""The trace rules follow the store: a change, and a rule's lapse, applied within a tick."""
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.trace_sync import TraceSync
from mqttd.metrics import Metrics
from mqttd.store.trace_rules import TraceRule
from tests.support.logs import capture_logs


class FakeStore:
    def __init__(self):
        self.version_value = 0
        self.stored = []
        self.reads = 0
        self.broken = False

    def version(self):
        if self.broken:
            return fail(OSError("database is locked"))
        return succeed(self.version_value)

    def rules(self):
        self.reads += 1
        return succeed(list(self.stored))

    def change(self, rules):
        self.stored = rules
        self.version_value += 1


class TraceSyncTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.store = FakeStore()
        self.metrics = Metrics()
        self.applied = []
        self.sync = TraceSync(self.clock, self.store, self.applied.append, self.metrics, 0.5)
        self.addCleanup(self.sync.stop)

    def test_the_first_poll_applies_what_is_there(self):
        self.store.change([TraceRule("client_id", "dev", "op", 0.0)])
        self.sync.start()
        self.assertEqual(self.applied, [[("client_id", "dev")]])
        self.assertEqual(self.metrics.trace_rules, 1)

    def test_a_change_within_a_tick_and_the_rules_read_only_then(self):
        self.sync.start()
        self.assertEqual(self.applied, [[]])
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual((len(self.applied), self.store.reads), (1, 1))
        self.store.change([TraceRule("ip", "10.0.0.1", "op", 0.0)])
        self.clock.advance(0.5)
        self.assertEqual(self.applied[-1], [("ip", "10.0.0.1")])
        self.assertEqual(self.store.reads, 2)

    def test_a_rule_lapses_at_its_until_without_a_change(self):
        self.store.change([TraceRule("client_id", "dev", "op", 0.0, until=1.2)])
        self.sync.start()
        self.assertEqual(self.applied, [[("client_id", "dev")]])
        self.clock.advance(1.0)
        self.assertEqual(len(self.applied), 1)
        self.clock.advance(0.5)
        self.assertEqual(self.applied[-1], [])
        self.assertEqual(self.sync.rules, [])

    def test_poll_now_looks_at_once(self):
        self.sync.start()
        self.store.change([TraceRule("client_id", "dev", "op", 0.0)])
        self.sync.poll_now()
        self.assertEqual(self.applied[-1], [("client_id", "dev")])

    def test_a_failed_poll_is_logged_once_counted_and_retried(self):
        logs = capture_logs(self)
        self.store.broken = True
        self.sync.start()
        self.clock.advance(0.5)
        self.assertEqual(self.metrics.trace_poll_failures, 2)
        self.assertEqual(len([e for e in logs if e.get("log_failure") is not None]), 1)
        self.store.broken = False
        self.store.change([TraceRule("client_id", "dev", "op", 0.0)])
        self.clock.advance(0.5)
        self.assertEqual(self.applied, [[("client_id", "dev")]])
        self.flushLoggedErrors(OSError)
