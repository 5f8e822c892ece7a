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

from mqttd.metrics import Metrics

__all__ = ["PER_PROCESS", "STALE_AFTER", "Family", "TreeMetrics", "new_run_id", "snapshot"]

log = Logger()

PER_PROCESS = ("mqtt_connections_open", "mqtt_connections_accepted",
               "mqtt_publish_received", "webhook_pending")
"""Series also exported per process: the figures an operator compares across workers."""

STALE_AFTER = 5.0
"""Seconds without a snapshot after which a child's gauges no longer count (5 intervals)."""

_KEEP_ENDED = 4  # ended runs per child whose late reports still add their growth
_FIELDS = {field.name: field.metadata for field in attrs.fields(Metrics)}


def new_run_id():
    """A name for one run of one process: a restarted child has a new one."""
    return os.urandom(8).hex()


def snapshot(metrics, run):
    """``metrics``' non-zero series as a JSON-ready message: ``{"run": run, "values":
    {name: value, or {label value: value} for a labelled one}}``."""
    values = {}
    for name, _, _, labels, value in metrics.samples():
        if not value:
            continue
        if labels:
            (key,) = labels.values()
            values.setdefault(name, {})[str(key)] = value
        else:
            values[name] = value
    return {"run": run, "values": values}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(values):
    """{(name, label value or None): number} of a snapshot's values; names this code does
    not know (a newer child's) and malformed entries are left out."""
    flat = {}
    for name, value in values.items():
        meta = _FIELDS.get(name)
        if meta is None:
            continue
        if meta["labels"]:
            if isinstance(value, dict):
                flat.update(((name, str(key)), count) for key, count in value.items()
                            if _is_number(count))
        elif _is_number(value):
            flat[(name, None)] = value
    return flat


def _counters(flat):
    return {key: value for key, value in flat.items() if _FIELDS[key[0]]["kind"] == "counter"}


@attrs.frozen
class Family:
    """One metric family to export: ``samples`` is a tuple of (labels dict, value)."""

    name: str
    kind: str
    help: str
    samples: tuple


@attrs.define(eq=False)
class _Child:
    up: bool = False  # a run is expected to report: started, or reporting, not gone
    heard: float = 0.0  # when it last reported (or was started)
    run: str = None  # the current run's id
    values: dict = attrs.Factory(dict)  # the current run's last snapshot, flat
    carried: dict = attrs.Factory(lambda: defaultdict(int))  # counters of ended runs
    ended: dict = attrs.Factory(dict)  # ended run id -> its last counters


class TreeMetrics:
    """The master's view of every process's registry (``own`` is its own, live)."""

    def __init__(self, clock, own, name, stale_after=STALE_AFTER):
        self._clock = clock
        self._own = own
        self._name = name
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
        flat = _flatten(values)
        child = self._children.setdefault(process, _Child())
        if run in child.ended:
            self._grow(child, run, flat)
            return
        if child.run is not None and child.run != run:
            self._end(child)
        child.run, child.values = run, flat
        child.up, child.heard = True, self._clock.seconds()

    def gone(self, process):
        """``process`` exited (or its channel broke): its run is over."""
        child = self._children.get(process)
        if child is not None:
            self._end(child)
            child.up = False

    @staticmethod
    def _end(child):
        if child.run is None:
            return
        counters = _counters(child.values)
        for key, value in counters.items():
            child.carried[key] += value
        child.ended[child.run] = counters
        while len(child.ended) > _KEEP_ENDED:
            del child.ended[next(iter(child.ended))]
        child.run, child.values = None, {}

    @staticmethod
    def _grow(child, run, flat):
        last = child.ended[run]
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

    def _sources(self):
        """(process, counters, gauges or None) of every process: its counters include
        its ended runs; its gauges count only while it is live and heard from."""
        own = _flatten(snapshot(self._own, "")["values"])
        yield self._name, own, own
        for process, child in sorted(self._children.items()):
            counters = defaultdict(int, child.carried)
            for key, value in _counters(child.values).items():
                counters[key] += value
            live = child.run is not None and self.stale(process) is None
            yield process, counters, (child.values if live else {})

    def families(self):
        """Every family of the tree: the sums, then ``PER_PROCESS`` by process, then
        ``tree_child_reporting``."""
        totals = defaultdict(int)
        by_process = defaultdict(dict)
        processes = []
        for process, counters, gauges in self._sources():
            processes.append(process)
            for source, kind in ((counters, "counter"), (gauges, "gauge")):
                for key, value in source.items():
                    if _FIELDS[key[0]]["kind"] == kind:
                        totals[key] += value
                        if key[0] in PER_PROCESS:
                            by_process[key[0]][process] = value
        for name, meta in _FIELDS.items():
            if meta["labels"]:
                (label,) = meta["labels"]
                samples = tuple(({label: key[1]}, totals[key]) for key in
                                sorted(k for k in totals if k[0] == name))
            else:
                samples = (({}, totals.get((name, None), 0)),)
            yield Family(name, meta["kind"], meta["help"], samples)
        for name in PER_PROCESS:
            meta = _FIELDS[name]
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
