"""Run `twistd mqttd` unchanged, and write its process's counters to a file on SIGUSR1.

For benchmarking only (storms.py). mqttd keeps its counters in one Metrics registry per
process (mqttd/metrics.py) and does not export them yet; the storm-isolation benchmark
needs the door's ``edge_refused`` by limit, which live in the master (or the single
process). This wrapper records every Metrics the process creates and, on SIGUSR1, writes
their samples, summed by series, as JSON to $MQTTD_METRICS_FILE (written to a temporary
name and renamed, so a reader never sees half a file). Nothing else of mqttd changes;
the children of a tree start as usual (they are not wrapped).

    MQTTD_METRICS_FILE=F python benchmarks/metrics_mqttd.py -n --pidfile P mqttd --config C ...
"""
import json
import os
import signal
import sys

ENV = "MQTTD_METRICS_FILE"


def series_key(name, labels):
    """``edge_refused{limit=limits.max_conn_per_ip}``, or the bare name."""
    if not labels:
        return name
    return "%s{%s}" % (name, ",".join("%s=%s" % kv for kv in sorted(labels.items())))


def dump(registries):
    """{series: value} summed over ``registries`` (objects with ``samples()``)."""
    out = {}
    for registry in registries:
        for name, _kind, _help, labels, value in registry.samples():
            key = series_key(name, labels)
            out[key] = out.get(key, 0) + value
    return out


def write_dump(path, registries):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dump(registries), f)
    os.replace(tmp, path)


def install(metrics_class, path):
    """Record every ``metrics_class`` made from now on; SIGUSR1 writes them to ``path``."""
    registries = []
    original = metrics_class.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        registries.append(self)

    metrics_class.__init__ = __init__
    signal.signal(signal.SIGUSR1, lambda *_: write_dump(path, registries))
    return registries


def main():
    from mqttd.metrics import Metrics
    from twisted.scripts.twistd import run

    install(Metrics, os.environ[ENV])
    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
