"""The whole tree's counters in one place: every process's registry, summed per series.

Each child (a broker worker, the ingest child) pushes a ``snapshot`` of its
``mqttd.metrics`` registry to the master about once a second, over the channel it
already has (``MetricsReporter``): only its non-zero series, a JSON message of a kilobyte
or two. The master keeps the last snapshot of each child, so a scrape is answered from
memory, at once, without asking N processes and waiting for the slowest or a hung one.
A figure is at most one interval old; a child's clean stop sends a last one.

Counters never go backwards. Each run of a child names itself with a random id; when a
run ends (the master saw the child exit, or a new run reports) its last counters are
kept for good and added in. A report of a run already ended (late on its channel) adds
only what it grew by. Gauges count only live runs heard from within ``stale_after``: a
dead or silent worker holds no connections. ``tree_child_reporting`` says which children
are being heard from.

The sum is what the single process exports too, under the same names, so a dashboard
works for both; a few series are also given per process (``PER_PROCESS``, as
``NAME_by_process{process="mqttd-worker-1"}``): connections by worker and the like.
"""
import os
from collections import defaultdict

import attrs
from twisted.logger import Logger

from mqttd.manage.snapshots import META, flatten, grows, snapshot

__all__ = ["IDENTITIES", "PER_PROCESS", "STALE_AFTER", "Family", "TreeMetrics",
           "new_run_id", "snapshot"]

log = Logger()

PER_PROCESS = ("mqtt_connections_open", "mqtt_connections_accepted",
               "mqtt_publish_received", "webhook_pending", "webhook_requests_in_flight")
"""Series also exported per process: the figures an operator compares across workers."""

STALE_AFTER = 5.0
"""Seconds without a snapshot after which a child's gauges no longer count (5 intervals).
Also how long an ended run's messages in flight wait for a late report (see IDENTITIES)."""

IDENTITIES = (
    ("mqtt_publish_received", ("mqtt_publish_stored", "mqtt_publish_not_stored"),
     "mqtt_publish_pending", ("mqtt_publish_not_stored", None)),
    ("webhook_submitted", ("webhook_committed", "webhook_rejected"),
     "webhook_pending", ("webhook_rejected", "worker exited")),
)
"""(total, parts, pending gauge, where an exited run's remainder goes): total = parts +
pending in every process at every moment. A run that ends (a worker killed) with
messages in flight never acknowledges them: for ``STALE_AFTER`` they still count as
pending (a clean stop's last report, late on its channel, settles them), then as
rejected (``mqttd_publish_not_stored``; ``webhook_rejected{reason="worker exited"}``), so
the identity holds over the whole tree across crashes too, and no counter goes back."""

_KEEP_ENDED = 4  # ended runs per child whose late reports still add their growth


def new_run_id():
    """A name for one run of one process: a restarted child has a new one."""
    return os.urandom(8).hex()


def _counters(flat):
    return {key: value for key, value in flat.items() if grows(key[0])}


def _remainders(counters):
    """(pending gauge, rejected key, messages in flight) of an ended run's last counters."""
    for total, parts, pending, rejected in IDENTITIES:
        settled = sum(value for key, value in counters.items() if key[0] in parts)
        left = counters.get((total, None), 0) - settled
        if left > 0:
            yield pending, rejected, left


@attrs.frozen
class Family:
    """One metric family to export: ``samples`` is a tuple of (labels dict, value); a
    histogram's one value is (bounds, counts per bucket, sum)."""

    name: str
    kind: str
    help: str
    samples: tuple


@attrs.define(eq=False)
class _Ended:
    counters: dict  # its last counters
    at: float  # when it ended


@attrs.define(eq=False)
class _Child:
    up: bool = False  # a run is expected to report: started, or reporting, not gone
    heard: float = 0.0  # when it last reported (or was started)
    run: str = None  # the current run's id
    values: dict = attrs.Factory(dict)  # the current run's last snapshot, flat
    details: dict = attrs.Factory(dict)  # the current run's last details
    carried: dict = attrs.Factory(lambda: defaultdict(int))  # counters of ended runs
    ended: dict = attrs.Factory(dict)  # ended run id -> _Ended


class TreeMetrics:
    """The master's view of every process's registry (``own`` is its own, live)."""

    def __init__(self, clock, own, name, stale_after=STALE_AFTER):
        self._clock = clock
        self._own = own
        self.name = name
        self._stale_after = stale_after
        self._children = {}

    # -- what the master tells it -------------------------------------------------------

    def started(self, process):
        """A run of ``process`` was spawned: it should report within ``stale_after``."""
        child = self._children.setdefault(process, _Child())
        child.up, child.heard = True, self._clock.seconds()

    def report(self, process, payload):
        """A snapshot from ``process`` (``snapshot``'s message)."""
        run = payload.get("run") if isinstance(payload, dict) else None
        values = payload.get("values") if isinstance(payload, dict) else None
        if not isinstance(run, str) or not isinstance(values, dict):
            log.warn("metrics from {process}: not a snapshot, ignored", process=process)
            return
        flat = flatten(values)
        child = self._children.setdefault(process, _Child())
        if run in child.ended:
            self._grow(child, run, flat)
            return
        if child.run is not None and child.run != run:
            self._end(child)
        details = payload.get("details")
        child.run, child.values = run, flat
        child.details = details if isinstance(details, dict) else {}
        child.up, child.heard = True, self._clock.seconds()

    def gone(self, process):
        """``process`` exited (or its channel broke): its run is over."""
        child = self._children.get(process)
        if child is not None:
            self._end(child)
            child.up = False

    def _end(self, child):
        if child.run is None:
            return
        counters = _counters(child.values)
        for key, value in counters.items():
            child.carried[key] += value
        child.ended[child.run] = _Ended(counters, self._clock.seconds())
        while len(child.ended) > _KEEP_ENDED:
            oldest = child.ended.pop(next(iter(child.ended)))
            for _, rejected, left in _remainders(oldest.counters):
                child.carried[rejected] += left  # for good: no report of it is read now
        child.run, child.values, child.details = None, {}, {}

    def _waits(self, ended):
        """Whether an ended run's late report is still awaited (see IDENTITIES)."""
        return self._clock.seconds() - ended.at <= self._stale_after

    def _grow(self, child, run, flat):
        ended = child.ended[run]
        if not self._waits(ended):
            return  # too late: what it had in flight counts as rejected already
        last = ended.counters
        for key, value in _counters(flat).items():
            growth = value - last.get(key, 0)
            if growth > 0:
                child.carried[key] += growth
                last[key] = value

    # -- what it answers ---------------------------------------------------------------

    def stale(self, process):
        """Seconds ``process`` has been silent past ``stale_after`` while it should
        report, or None (it is heard from, or not expected to be)."""
        child = self._children.get(process)
        if child is None or not child.up:
            return None
        silent = self._clock.seconds() - child.heard
        return silent if silent > self._stale_after else None

    def _live(self, process, child):
        return child.run is not None and self.stale(process) is None

    def _sources(self):
        """(process, counters, gauges) of every process: its counters include its ended
        runs; its gauges count only while it is live and heard from (and the messages
        in flight of a run that ended lately, as pending)."""
        own = flatten(snapshot(self._own, "")["values"])
        yield self.name, own, own
        for process, child in sorted(self._children.items()):
            counters = defaultdict(int, child.carried)
            for key, value in _counters(child.values).items():
                counters[key] += value
            gauges = dict(child.values) if self._live(process, child) else {}
            for ended in child.ended.values():
                waiting = self._waits(ended)
                for pending, rejected, left in _remainders(ended.counters):
                    if waiting:
                        gauges[(pending, None)] = gauges.get((pending, None), 0) + left
                    else:
                        counters[rejected] += left
            yield process, counters, gauges

    def by_process(self):
        """{process: {(name, key): value}} (``snapshots.flatten``'s keys): counters and
        histograms with their ended runs, gauges while live. What the alert rules read."""
        figures = {}
        for process, counters, gauges in self._sources():
            flat = {key: value for key, value in gauges.items() if not grows(key[0])}
            flat.update(counters)
            figures[process] = flat
        return figures

    def details(self, key):
        """[(process, value)] of ``key`` in the details of every live child's last
        snapshot (``snapshots.snapshot``), in process order."""
        return [(process, child.details[key])
                for process, child in sorted(self._children.items())
                if key in child.details and self._live(process, child)]

    def families(self):
        """Every family of the tree: the sums, then ``PER_PROCESS`` by process, then
        ``tree_child_reporting``."""
        totals = defaultdict(int)
        by_process = defaultdict(dict)
        processes = []
        for process, counters, gauges in self._sources():
            processes.append(process)
            for source, counting in ((counters, True), (gauges, False)):
                for key, value in source.items():
                    if grows(key[0]) == counting:
                        totals[key] += value
                        if key[0] in PER_PROCESS:
                            by_process[key[0]][process] = value
        for name, meta in META.items():
            yield Family(name, meta["kind"], meta["help"], _samples(name, meta, totals))
        for name in PER_PROCESS:
            meta = META[name]
            samples = tuple(({"process": process}, by_process[name].get(process, 0))
                            for process in processes)
            yield Family(f"{name}_by_process", meta["kind"], f"{meta['help']}, by process",
                         samples)
        if self._children:
            yield Family("tree_child_reporting", "gauge",
                         "1 while a child of the master reports its metrics (every second), "
                         f"0 once it is gone or silent past {self._stale_after:g} s",
                         tuple(({"process": process},
                                int(child.up and self.stale(process) is None))
                               for process, child in sorted(self._children.items())))


def _samples(name, meta, totals):
    if meta["kind"] == "histogram":
        bounds = meta["bounds"]
        counts = tuple(totals.get((name, index), 0) for index in range(len(bounds) + 1))
        return (({}, (bounds, counts, totals.get((name, "sum"), 0.0))),)
    if meta["labels"]:
        (label,) = meta["labels"]
        return tuple(({label: key[1]}, totals[key])
                     for key in sorted(k for k in totals if k[0] == name))
    return (({}, totals.get((name, None), 0)),)
