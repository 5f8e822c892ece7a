"""The trace's JSON-lines file: whole lines, appended, one write per reactor turn."""
import json
import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.errors import ConfigError
from mqttd.manage.trace_file import FLUSH_BYTES, TraceFile, open_trace_file
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs


def event(n, size=10):
    return {"trace_line": json.dumps({"n": n, "pad": "x" * size}) + "\n"}


class TraceFileTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())
        self.clock = Clock()
        self.metrics = Metrics()

    def read(self):
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line)["n"] for line in f]

    def test_lines_wait_for_the_end_of_the_turn_then_go_in_one_write(self):
        writer = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        self.addCleanup(writer.close)
        writes = []
        real = os.write
        self.patch(os, "write", lambda fd, data: writes.append(len(data)) or real(fd, data))
        for n in range(5):
            writer(event(n))
        self.assertEqual(self.read(), [])
        self.clock.advance(0)
        self.assertEqual(self.read(), [0, 1, 2, 3, 4])
        self.assertEqual(len(writes), 1)

    def test_a_big_burst_is_written_at_once_in_whole_lines(self):
        writer = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        self.addCleanup(writer.close)
        count = FLUSH_BYTES // 1000 + 5
        for n in range(count):
            writer(event(n, 1000))
        self.assertGreater(len(self.read()), 0)  # before the turn ended
        self.clock.advance(0)
        self.assertEqual(self.read(), list(range(count)))

    def test_two_writers_append_to_one_file(self):
        """Two processes' writers: O_APPEND puts each write at the end (the tree's case)."""
        first = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        second = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        first(event(1))
        first.flush()
        second(event(2))
        second.flush()
        first(event(3))
        first.close()
        second.close()
        self.assertEqual(self.read(), [1, 2, 3])

    def test_after_a_truncation_writes_land_at_the_new_end(self):
        """logrotate's copytruncate: no hole where the old lines were."""
        writer = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        self.addCleanup(writer.close)
        for n in range(3):
            writer(event(n))
        writer.flush()
        os.truncate(self.path, 0)
        writer(event(9))
        writer.flush()
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertEqual(data, event(9)["trace_line"].encode())

    def test_a_failed_write_drops_its_lines_counts_and_logs_once(self):
        fd = open_trace_file(self.path)
        writer = TraceFile(self.clock, fd, self.metrics, self.path)
        self.patch(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(28, "No space")))
        logs = capture_logs(self)
        writer(event(1))
        writer(event(2))
        writer.flush()
        writer(event(3))
        writer.flush()
        self.assertEqual(self.metrics.trace_write_errors, 3)
        self.assertEqual(len([e for e in logs if "failed" in str(e.get("log_format"))]), 1)
        os.close(fd)

    def test_a_file_that_cannot_be_opened_names_the_key(self):
        with self.assertRaises(ConfigError) as caught:
            open_trace_file(os.path.join(self.path, "missing", "trace.jsonl"))
        self.assertIn("manage.trace_file: cannot open", str(caught.exception))

    def test_events_without_a_line_are_not_written(self):
        writer = TraceFile(self.clock, open_trace_file(self.path), self.metrics, self.path)
        writer({"log_format": "something else"})
        writer.close()
        self.assertEqual(self.read(), [])
