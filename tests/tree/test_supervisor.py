"""The supervisor on a fake process reactor and task.Clock: it starts every child, starts a
dead one again after a delay that doubles while it dies young and resets once it ran
stable_after, calls ``start`` afresh each time (fresh fds), relays output lines bounded,
counts restarts, and stops with SIGTERM then SIGKILL without restarting anything.
"""
import itertools
import json
import signal

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.metrics import Metrics
from mqttd.tree.supervisor import MAX_LINE_BYTES, LineRelay, Supervisor, describe_exit
from tests.support.logs import capture_logs
from tests.support.processes import FakeProcessReactor

_EPSILON = 2 ** -10  # exact in binary, so that a boundary is hit exactly


class _Spawner:
    """A child as the master describes one: each start makes a fresh channel fd, passes it
    as fd 3 and writes the role to stdin, then closes stdin."""

    def __init__(self, reactor, role, fds):
        self._reactor = reactor
        self._role = role
        self._fds = fds
        self.fds_given = []

    def __call__(self, protocol):
        fd = next(self._fds)
        self.fds_given.append(fd)
        process = self._reactor.spawnProcess(
            protocol, "/usr/bin/python3", ["/usr/bin/python3", "-m", "mqttd.tree.child"],
            env=None, childFDs={0: "w", 1: "r", 2: "r", 3: fd})
        process.write(json.dumps({"role": self._role}).encode())
        process.closeStdin()
        return process


class _Case(unittest.TestCase):
    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.metrics = Metrics()
        self._fds = itertools.count(100)
        self.started, self.exited = [], []

    def supervisor(self, **delays):
        options = dict(min_restart_delay=1.0, max_restart_delay=60.0, stable_after=10.0,
                       kill_timeout=5.0)
        options.update(delays)
        return Supervisor(self.reactor, self.metrics, **options)

    def add(self, supervisor, name):
        spawner = _Spawner(self.reactor, name, self._fds)
        supervisor.add(name, spawner,
                       on_start=lambda *args: self.started.append(args),
                       on_exit=lambda *args: self.exited.append(args))
        return spawner

    def running(self, **options):
        """A started supervisor of one child, "worker 1", and that child's process."""
        supervisor = self.supervisor(**options)
        self.add(supervisor, "worker 1")
        supervisor.startService()
        return supervisor, self.reactor.processes[-1]

    def restart_delays(self, deaths, run_for=0.0):
        """Let the last child spawned die ``deaths`` times, each after ``run_for``
        seconds; the delays from each death to the next start of it."""
        delays = []
        for _ in range(deaths):
            self.reactor.advance(run_for)
            self.reactor.processes[-1].exit(1)
            (restart,) = self.reactor.getDelayedCalls()
            delays.append(restart.getTime() - self.reactor.seconds())
            spawned = len(self.reactor.processes)
            self.reactor.advance(delays[-1])
            self.assertEqual(len(self.reactor.processes), spawned + 1)
        return delays


class StartTests(_Case):
    def test_every_child_spawns_when_the_service_starts_with_its_fds_and_stdin(self):
        supervisor = self.supervisor()
        self.add(supervisor, "worker 1")
        self.add(supervisor, "ingest")
        self.assertEqual(self.reactor.processes, [])
        supervisor.startService()
        worker, ingest = self.reactor.processes
        self.assertEqual(worker.child_fds, {0: "w", 1: "r", 2: "r", 3: 100})
        self.assertEqual(json.loads(ingest.stdin), {"role": "ingest"})
        self.assertTrue(worker.stdin_closed)
        self.assertEqual(self.started, [("worker 1", worker), ("ingest", ingest)])
        self.assertEqual(supervisor.pids(), {"worker 1": worker.pid, "ingest": ingest.pid})

    def test_a_child_added_to_a_running_supervisor_starts_at_once(self):
        supervisor, _ = self.running()
        self.add(supervisor, "worker 2")
        self.assertEqual(len(self.reactor.alive), 2)

    def test_two_children_cannot_share_a_name(self):
        supervisor = self.supervisor()
        self.add(supervisor, "worker 1")
        self.assertRaises(KeyError, self.add, supervisor, "worker 1")

    def test_bad_delays_are_refused(self):
        for bad in (dict(min_restart_delay=0), dict(min_restart_delay=5, max_restart_delay=4),
                    dict(stable_after=-1), dict(kill_timeout=-1), dict(max_line_bytes=0)):
            self.assertRaises(ValueError, self.supervisor, **bad)


class RestartTests(_Case):
    def test_a_dead_child_starts_again_after_min_restart_delay(self):
        supervisor, first = self.running()
        self.reactor.advance(0.5)
        first.exit(3)
        self.assertEqual(self.exited[0][0], "worker 1")
        self.assertEqual(self.exited[0][1].value.exitCode, 3)
        self.assertEqual(supervisor.pids(), {})
        self.reactor.advance(1 - _EPSILON)
        self.assertEqual(len(self.reactor.processes), 1)
        self.reactor.advance(_EPSILON)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(self.started[-1], ("worker 1", self.reactor.processes[1]))

    def test_the_delay_doubles_with_each_young_death_up_to_max_restart_delay(self):
        self.running(max_restart_delay=8.0)
        self.assertEqual(self.restart_delays(6, run_for=1.0), [1, 2, 4, 8, 8, 8])

    def test_the_delay_resets_after_a_run_of_stable_after(self):
        self.running()
        self.assertEqual(self.restart_delays(3, run_for=9.0), [1, 2, 4])
        self.assertEqual(self.restart_delays(1, run_for=10.0), [1])  # stable: reset
        self.assertEqual(self.restart_delays(2, run_for=10 - _EPSILON), [2, 4])

    def test_start_is_called_afresh_at_each_restart(self):
        supervisor = self.supervisor()
        spawner = self.add(supervisor, "worker 1")
        supervisor.startService()
        self.restart_delays(3)
        self.assertEqual(spawner.fds_given, [100, 101, 102, 103])
        self.assertEqual([p.child_fds[3] for p in self.reactor.processes], [100, 101, 102, 103])
        self.assertTrue(all(json.loads(p.stdin) == {"role": "worker 1"}
                            for p in self.reactor.processes))

    def test_restarts_are_counted_by_child(self):
        supervisor, _ = self.running()
        self.add(supervisor, "ingest")
        self.restart_delays(2)  # the ingest child is the last one spawned
        self.assertEqual(self.metrics.value("tree_restarts", child="ingest"), 2)
        self.assertEqual(self.metrics.value("tree_restarts", child="worker 1"), 0)
        series = [(labels, value) for name, kind, _, labels, value in self.metrics.samples()
                  if name == "tree_restarts"]
        self.assertEqual(series, [({"child": "ingest"}, 2)])

    def test_a_start_that_raises_is_a_death_backed_off_like_any_other(self):
        self.reactor.spawn_error = OSError(24, "Too many open files")
        supervisor = self.supervisor()
        self.add(supervisor, "worker 1")
        supervisor.startService()
        self.reactor.advance(1.0)
        self.reactor.advance(2.0)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 3)
        self.assertEqual(self.reactor.processes, [])
        self.reactor.spawn_error = None
        self.reactor.advance(4 - _EPSILON)
        self.assertEqual(self.reactor.processes, [])
        self.reactor.advance(_EPSILON)
        self.assertEqual(len(self.reactor.alive), 1)
        self.assertEqual(self.metrics.value("tree_restarts", child="worker 1"), 3)
        self.assertEqual(self.started, [("worker 1", self.reactor.processes[0])])

    def test_each_death_is_logged_with_status_count_and_next_delay(self):
        events = capture_logs(self)
        self.running()
        self.reactor.processes[-1].exit(3)
        self.reactor.advance(1.0)
        self.reactor.processes[-1].kill_by(signal.SIGKILL)
        deaths = [e for e in events if e.get("in_a_row")]
        self.assertEqual([(e["child"], e["status"], e["in_a_row"], e["delay"]) for e in deaths],
                         [("worker 1", "exit status 3", 1, 1.0),
                          ("worker 1", "killed by SIGKILL", 2, 2.0)])

    def test_a_hook_that_raises_does_not_stop_the_restarts(self):
        supervisor = self.supervisor()
        supervisor.add("worker 1", _Spawner(self.reactor, "worker 1", self._fds),
                       on_start=lambda name, transport: 1 / 0,
                       on_exit=lambda name, reason: 1 / 0)
        supervisor.startService()
        self.restart_delays(2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 5)
        self.assertEqual(len(self.reactor.alive), 1)


class StopTests(_Case):
    def test_stop_sends_sigterm_then_sigkill_after_kill_timeout_and_restarts_nothing(self):
        supervisor = self.supervisor()
        self.add(supervisor, "worker 1")
        self.add(supervisor, "ingest")
        supervisor.startService()
        polite, stubborn = self.reactor.processes
        polite.exit_on["TERM"] = ("exit", 0)
        stopped = supervisor.stopService()
        self.reactor.advance(0)
        self.assertEqual((polite.signals, stubborn.signals), (["TERM"], ["TERM"]))
        self.assertFalse(polite.alive)
        self.reactor.advance(5 - _EPSILON)
        self.assertNoResult(stopped)
        self.assertEqual(stubborn.signals, ["TERM"])
        self.reactor.advance(_EPSILON)
        self.assertEqual(stubborn.signals, ["TERM", "KILL"])
        self.reactor.advance(0)
        self.assertIsNone(self.successResultOf(stopped))
        self.reactor.advance(3600)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual([name for name, _ in self.exited], ["worker 1", "ingest"])
        self.assertEqual(self.metrics.value("tree_restarts", child="ingest"), 0)

    def test_a_child_that_exits_on_sigterm_is_not_killed(self):
        supervisor, child = self.running()
        child.exit_on["TERM"] = ("signal", signal.SIGTERM)
        stopped = supervisor.stopService()
        self.reactor.advance(0)
        self.successResultOf(stopped)
        self.reactor.advance(10)
        self.assertEqual(child.signals, ["TERM"])

    def test_stop_cancels_a_pending_restart(self):
        supervisor, child = self.running()
        child.exit(1)
        self.successResultOf(supervisor.stopService())
        self.reactor.advance(3600)
        self.assertEqual(len(self.reactor.processes), 1)

    def test_started_again_while_stopping_it_restarts_the_child_that_exits(self):
        supervisor, child = self.running()
        stopped = supervisor.stopService()
        supervisor.startService()
        self.assertEqual(len(self.reactor.processes), 1)  # still running: not doubled
        child.exit(0)
        self.successResultOf(stopped)
        self.reactor.advance(1.0)
        self.assertEqual(len(self.reactor.alive), 1)
        self.reactor.advance(3600)
        self.assertEqual(child.signals, ["TERM"])  # its SIGKILL was called off

    def test_stop_with_no_child_running_is_done_at_once(self):
        self.successResultOf(self.supervisor().stopService())

    def test_signal_all_relays_a_signal_to_every_running_child(self):
        supervisor, first = self.running()
        self.add(supervisor, "worker 2")
        first.exit(1)
        supervisor.signal_all("HUP")
        self.assertEqual([p.signals for p in self.reactor.processes], [[], ["HUP"]])


class OutputTests(_Case):
    def relayed(self, events):
        return [(e["child"], e["stream"], e["log_level"].name, e["line"], e["cut"])
                for e in events if "stream" in e]

    def test_lines_are_relayed_one_by_one_under_the_child_name(self):
        events = capture_logs(self)
        _, child = self.running()
        for byte in b"hello\r\nwor":
            child.output(1, bytes([byte]))
        child.output(2, b"Traceback\n")
        child.output(1, b"ld\nno newline")
        child.output(3, b"not a log stream\n")
        child.exit(1)
        self.assertEqual(self.relayed(events), [
            ("worker 1", "stdout", "info", "hello", False),
            ("worker 1", "stderr", "warn", "Traceback", False),
            ("worker 1", "stdout", "info", "world", False),
            ("worker 1", "stdout", "info", "no newline", False)])

    def test_a_line_over_max_line_bytes_is_cut_and_its_rest_dropped(self):
        events = capture_logs(self)
        _, child = self.running(max_line_bytes=16)
        for byte in b"x" * 40 + b"\n\xff ok\n":
            child.output(1, bytes([byte]))
        self.assertEqual(self.relayed(events), [
            ("worker 1", "stdout", "info", "x" * 16, True),
            ("worker 1", "stdout", "info", "\\xff ok", False)])
        self.assertIn("cut at 16 bytes", formatEvent(events[0]))

    def test_the_default_cap_is_16_kib(self):
        self.assertEqual(MAX_LINE_BYTES, 16384)
        events = capture_logs(self)
        _, child = self.running()
        child.output(1, b"y" * 16384 + b"\n" + b"z" * 16385 + b"\n")
        self.assertEqual([(len(line), cut) for *_, line, cut in self.relayed(events)],
                         [(16384, False), (16384, True)])


class LineRelayTests(unittest.TestCase):
    def lines(self, chunks, max_bytes=4):
        out = []
        relay = LineRelay(lambda line, cut: out.append((line, cut)), max_bytes)
        for chunk in chunks:
            relay.feed(chunk)
        relay.flush()
        return out

    def test_a_line_of_exactly_max_bytes_is_whole(self):
        self.assertEqual(self.lines([b"abcd", b"\n"]), [(b"abcd", False)])

    def test_one_byte_more_is_cut(self):
        self.assertEqual(self.lines([b"abcde\nf"]), [(b"abcd", True), (b"f", False)])

    def test_a_long_line_fed_byte_by_byte_holds_at_most_max_bytes(self):
        out = []
        relay = LineRelay(lambda line, cut: out.append((line, cut)), 4)
        held = []
        for byte in b"abcdefghij\nk":
            relay.feed(bytes([byte]))
            held.append(relay.buffered)
        self.assertEqual(max(held), 4)
        self.assertEqual((out, relay.buffered), ([(b"abcd", True)], 1))

    def test_empty_lines_are_kept_and_nothing_is_left_at_the_end(self):
        self.assertEqual(self.lines([b"\n\na\n"]), [(b"", False), (b"", False), (b"a", False)])


class DescribeExitTests(unittest.TestCase):
    def test_exit_status_signal_and_failure_to_start(self):
        self.assertEqual(describe_exit(Failure(ProcessDone(0))), "exit status 0")
        self.assertEqual(describe_exit(Failure(ProcessTerminated(exitCode=2))), "exit status 2")
        self.assertEqual(describe_exit(Failure(ProcessTerminated(signal=15))),
                         "killed by SIGTERM")
        self.assertEqual(describe_exit(Failure(OSError(24, "Too many open files"))),
                         "could not start: OSError(24, 'Too many open files')")
