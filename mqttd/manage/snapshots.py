"""A process's figures as a child sends them to the master, and as the master reads them.

``snapshot(metrics, run, details)`` is the message (JSON-ready): its non-zero counters
and gauges, each histogram's bucket counts and sum (the bounds are the registry's
declaration, the same in every process of one tree, so the master adds counts bucket by
bucket: a histogram merges across processes, a percentile would not), and ``details``,
a small dict of lists that are not series (the devices a worker sees silent, say).

``flatten(values)`` reads one back as {(name, key): number}, the one shape the master
sums: key None for a plain series, the label value for a labelled one, and for a
histogram the bucket index (0..len(bounds)) and "sum". Names this code does not know
(a newer child's) and malformed entries are left out.
"""
import attrs

from mqttd.metrics import DERIVED, Metrics

__all__ = ["META", "count_and_sum", "flatten", "grows", "snapshot"]

META = {field.name: field.metadata for field in attrs.fields(Metrics)}
META.update({name: {"kind": kind, "help": help, "labels": ()}
             for name, (kind, help, _) in DERIVED.items()})
"""name -> {"kind", "help", "labels"(, "bounds")} of every family a process reports."""


def grows(name):
    """Whether ``name`` only ever grows (a counter or a histogram), so a run's last
    figures are kept once it ends; a gauge counts only while its run lives."""
    return META[name]["kind"] != "gauge"


def snapshot(metrics, run, details=None):
    """``metrics``' non-zero series as a message: ``{"run": run, "values": {name: value,
    {label value: value} for a labelled one, {"counts": [...], "sum": s} for a
    histogram}}``, with ``"details": details`` when given."""
    values = {}
    for name, _, _, labels, value in metrics.samples():
        if not value:
            continue
        if labels:
            (key,) = labels.values()
            values.setdefault(name, {})[str(key)] = value
        else:
            values[name] = value
    for name, _, histogram in metrics.histograms():
        if histogram.sum or any(histogram.counts):
            values[name] = {"counts": list(histogram.counts), "sum": histogram.sum}
    message = {"run": run, "values": values}
    if details:
        message["details"] = details
    return message


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flatten(values):
    """{(name, key): number} of a snapshot's values (see the module)."""
    flat = {}
    for name, value in values.items():
        meta = META.get(name)
        if meta is None:
            continue
        if meta["kind"] == "histogram":
            flat.update(_histogram(name, meta["bounds"], value))
        elif meta["labels"]:
            if isinstance(value, dict):
                flat.update(((name, str(key)), count) for key, count in value.items()
                            if _is_number(count))
        elif _is_number(value):
            flat[(name, None)] = value
    return flat


def _histogram(name, bounds, value):
    if not isinstance(value, dict):
        return ()
    counts, total = value.get("counts"), value.get("sum")
    if (not isinstance(counts, list) or len(counts) != len(bounds) + 1
            or not all(_is_number(count) for count in counts) or not _is_number(total)):
        return ()
    return [((name, index), count) for index, count in enumerate(counts)] + [
        ((name, "sum"), total)]


def count_and_sum(flat, name):
    """(observations, their sum) of histogram ``name`` in ``flat`` (``flatten``'s shape)."""
    buckets = len(META[name]["bounds"]) + 1
    return (sum(flat.get((name, index), 0) for index in range(buckets)),
            flat.get((name, "sum"), 0.0))
