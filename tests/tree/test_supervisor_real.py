"""The supervisor with real processes on the real reactor: a child that exits at once is
started again with a growing delay, its output reaches the log under its name, a fresh
socketpair end reaches each run as fd 3, and a child that stays up is stopped by SIGTERM,
with nothing started after the stop."""
import socket
import sys

from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from mqttd.metrics import Metrics
from mqttd.tree.supervisor import Supervisor

_CRASHING = "print('up', flush=True); raise SystemExit(3)"
_STAYING = ("import os, time; os.write(3, b'over fd 3'); print('ready', flush=True); "
            "time.sleep(60)")


class RealChildTests(unittest.TestCase):
    timeout = 20

    def watch_lines(self):
        """The child lines relayed to the log, and a Deferred fired on the first 'ready'."""
        lines, ready = [], defer.Deferred()

        def observe(event):
            if event.get("stream") == "stdout":
                lines.append((event["child"], event["line"]))
                if event["line"] == "ready" and not ready.called:
                    ready.callback(None)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return lines, ready

    @defer.inlineCallbacks
    def test_a_crashing_child_is_backed_off_and_a_running_one_stopped_by_sigterm(self):
        lines, ready = self.watch_lines()
        metrics = Metrics()
        supervisor = Supervisor(reactor, metrics, min_restart_delay=0.1,
                                max_restart_delay=0.4, stable_after=5.0, kill_timeout=5.0)
        starts, exits, channels = [], [], []

        def start(protocol):  # as the master will: a fresh socketpair end as fd 3
            code = _CRASHING if len(starts) < 4 else _STAYING
            starts.append(reactor.seconds())
            ours, theirs = socket.socketpair()
            self.addCleanup(ours.close)
            channels.append(ours)
            try:
                return reactor.spawnProcess(
                    protocol, sys.executable, [sys.executable, "-c", code], env=None,
                    childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()})
            finally:
                theirs.close()

        def on_exit(name, reason):
            exits.append((reactor.seconds(), reason.value.exitCode, reason.value.signal))

        supervisor.add("worker 1", start, on_exit=on_exit)
        supervisor.startService()
        self.addCleanup(lambda: supervisor.running and supervisor.stopService())
        yield ready
        self.assertEqual([code for _, code, _ in exits], [3, 3, 3, 3])
        waits = [round(started - exited, 3) for (exited, _, _), started
                 in zip(exits, starts[1:])]
        for wait, delay in zip(waits, [0.1, 0.2, 0.4, 0.4]):
            self.assertGreaterEqual(wait + 0.01, delay, waits)  # timers may round down
        self.assertEqual(lines, [("worker 1", "up")] * 4 + [("worker 1", "ready")])
        self.assertEqual(metrics.value("tree_restarts", child="worker 1"), 4)
        channels[-1].setblocking(False)
        self.assertEqual(channels[-1].recv(100), b"over fd 3")  # written before 'ready'

        asked = reactor.seconds()
        yield supervisor.stopService()
        self.assertEqual(exits[-1][2], 15)  # SIGTERM ended it, not the SIGKILL
        self.assertLess(exits[-1][0] - asked, 5.0)
        yield task.deferLater(reactor, 0.5, lambda: None)  # longer than any restart delay
        self.assertEqual(len(starts), 5)
