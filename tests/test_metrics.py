"""The one registry: every counter of the process, under one unambiguous name each."""
import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.ingest.resource import IngestResource
from mqttd.ingest.writer import BatchWriter
from mqttd.metrics import DERIVED, Metrics


class _NoStore:
    def insert_batches(self, batches):
        raise AssertionError("not reached")


class RegistryTests(unittest.TestCase):
    def test_samples_name_every_field_once_with_its_kind_and_help(self):
        metrics = Metrics()
        names = [name for name, *_ in metrics.samples()]
        fields = [f.name for f in attrs.fields(Metrics)
                  if not f.metadata["labels"] and f.metadata["kind"] != "histogram"]
        # Labelled fields give no series until counted; the derived gauges come last.
        self.assertEqual(names, fields + list(DERIVED))
        for name, kind, help, labels, value in metrics.samples():
            self.assertIn(kind, ("counter", "gauge"))
            self.assertTrue(help, name)
            self.assertEqual((labels, value), ({}, 0))

    def test_a_labelled_field_gives_one_series_per_label_value(self):
        metrics = Metrics()
        metrics.webhook_rejected["ack timeout"] += 2
        metrics.webhook_rejected["overload"] += 1
        series = [(labels, value) for name, _, _, labels, value in metrics.samples()
                  if name == "webhook_rejected"]
        self.assertEqual(series, [({"reason": "ack timeout"}, 2), ({"reason": "overload"}, 1)])
        self.assertEqual(metrics.value("webhook_rejected", reason="overload"), 1)
        self.assertEqual(metrics.value("webhook_rejected", reason="never"), 0)

    def test_names_are_unique_and_prefixed_by_their_tier(self):
        names = [f.name for f in attrs.fields(Metrics)]
        self.assertEqual(len(names), len(set(names)))
        for name in names:
            self.assertIn(name.split("_")[0], ("mqtt", "edge", "gate", "webhook", "ingest", "tree",
                                                "trace", "cluster", "manage"),
                          name)

    def test_the_ingest_tier_counts_into_the_registry_it_is_given(self):
        metrics = Metrics()
        writer = BatchWriter(Clock(), _NoStore(), metrics=metrics)
        resource = IngestResource(writer, "s3cret")
        self.assertIs(resource.metrics, metrics)
        writer.close()
        with self.assertRaises(Exception):
            writer.submit([("k",)])
        self.assertEqual(metrics.ingest_rows_refused, 1)


class OneRegistryPerProcessTests(unittest.TestCase):
    def test_every_tier_of_the_service_counts_into_the_same_registry(self):
        from twisted.internet.testing import MemoryReactorClock

        from mqttd.config import parse_config
        from mqttd.service import build_service

        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp()}})
        root = build_service(config, MemoryReactorClock())
        registry = root.metrics
        self.assertIs(root.broker.metrics, registry)
        self.assertIs(root.webhook.metrics, registry)
        self.assertIs(root.ingest.writer.metrics, registry)
        self.assertIs(root.broker.connection_log.metrics, registry)
        root.broker.connection_opened()
        self.assertEqual(registry.mqtt_connections_open, 1)
