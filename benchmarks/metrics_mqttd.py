"""Every process of an mqttd, unchanged, writes its counters to a file on SIGUSR1.

For benchmarking only (storms.py, batch_sizes.py). mqttd keeps its counters in one
Metrics registry per process (mqttd/metrics.py) and does not export them yet; the
benchmarks need the door's ``edge_refused`` by limit (in the master, or the single
process) and the webhook and ingest counters of the workers and the ingest child (how
many messages a request carries). ``brokers.make_mqttd(metrics=True)`` puts
``metrics_site/`` on PYTHONPATH with $MQTTD_METRICS_DIR set: its sitecustomize, which
every process of the tree imports at start (children inherit the environment), calls
``install_from_env()``, which records every Metrics the process creates and, on SIGUSR1,
writes their samples summed by series as JSON to $MQTTD_METRICS_DIR/PID.json (to a
temporary name, then renamed, so a reader never sees half a file). Nothing of mqttd
changes.
"""
import json
import os
import signal

ENV = "MQTTD_METRICS_DIR"


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


def install_from_env():
    """The sitecustomize hook: install on mqttd's Metrics, dumps in $MQTTD_METRICS_DIR."""
    from mqttd.metrics import Metrics

    directory = os.environ[ENV]
    return install(Metrics, os.path.join(directory, "%d.json" % os.getpid()))
