"""A child's side of the tree's metrics: a snapshot of its registry to the master, every
second (``mqttd.manage.tree_metrics`` says why a push, and why this often).

``send(payload)`` writes one "metrics" message on the child's channel; it may find the
channel not open yet or gone (it then returns False and the next tick tries again). A
last snapshot goes at stop, so a clean stop's final commits are counted. ``details()``,
if given, adds what is not a series (``snapshots.snapshot``): a worker's silent devices.
"""
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mqttd.manage.snapshots import snapshot
from mqttd.manage.tree_metrics import new_run_id

__all__ = ["INTERVAL", "MetricsReporter"]

log = Logger()

INTERVAL = 1.0
"""Seconds between two snapshots: what a scrape of the master may lag behind a child."""


class MetricsReporter(Service):
    def __init__(self, clock, metrics, send, interval=INTERVAL, details=None):
        self._metrics = metrics
        self._details = details
        self._send = send
        self._interval = interval
        self.run = new_run_id()
        self._loop = LoopingCall(self.report)
        self._loop.clock = clock

    def report(self):
        """Send a snapshot now; never raises (a LoopingCall that raised would stop)."""
        try:
            details = self._details() if self._details is not None else None
            self._send(snapshot(self._metrics, self.run, details))
        except Exception:
            log.failure("sending a metrics snapshot to the master failed")

    def startService(self):
        super().startService()
        self._loop.start(self._interval, now=True)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self.report()
