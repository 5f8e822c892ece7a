"""The tree's families in Prometheus' text format, through prometheus_client.

prometheus_client writes the format (escaping, ``_total`` on counters, ``# HELP`` and
``# TYPE``) so that no hand-written printer drifts from what Prometheus parses. Its own
registry of live metric objects is not used: the figures are mqttd's registry summed over
the tree (``TreeMetrics.families``), read at each scrape by one custom collector.
"""
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily)
from prometheus_client.utils import floatToGoString
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

__all__ = ["CONTENT_TYPE", "Exposition"]

# The text format every Prometheus reads (what prometheus_client serves when a scraper
# asks for nothing newer); mqttd's names need none of 1.0.0's escaping.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


class _Collector:
    def __init__(self, families):
        self._families = families

    def collect(self):
        for family in self._families():
            if family.kind == "histogram":
                yield _histogram(family)
                continue
            names = sorted({name for labels, _ in family.samples for name in labels})
            metric = _KINDS[family.kind](family.name, family.help, labels=names)
            for labels, value in family.samples:
                metric.add_metric([str(labels[name]) for name in names], value)
            yield metric


def _histogram(family):
    """A histogram family (one unlabelled sample: bounds, counts per bucket, sum) with
    Prometheus' cumulative ``le`` buckets."""
    ((_, (bounds, counts, total)),) = family.samples
    buckets, running = [], 0
    for bound, count in zip(tuple(bounds) + (float("inf"),), counts):
        running += count
        buckets.append((floatToGoString(bound), running))
    return HistogramMetricFamily(family.name, family.help, buckets=buckets, sum_value=total)


class Exposition:
    """``render()``: the text of ``families()`` (an iterable of ``tree_metrics.Family``)."""

    def __init__(self, families):
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(families))

    def render(self):
        return generate_latest(self._registry)
