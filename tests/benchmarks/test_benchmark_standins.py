"""The benchmarks' stand-ins still speak the webhook client's interface.

benchmarks/nohttp_mqttd.py replaces treq with a direct call into the built-in tier's
writer; when the client's use of treq's response changed (its own body reader), the
stand-in failed every request and compare.py --with-nohttp measured nothing. This
runs a real WebhookSink through it.
"""
import importlib.util
import os

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.config import WebhookConfig
from mqttd.ingest.client import WebhookSink
from tests.support.messages import message

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def _load(name):
    path = os.path.join(HERE, os.pardir, "benchmarks", name + ".py")
    spec = importlib.util.spec_from_file_location("bench_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Writer:
    def __init__(self):
        self.rows = []

    def submit(self, rows, size):
        self.rows += rows
        return succeed(len(rows))


class NoHttpStandInTests(unittest.TestCase):
    def test_a_batch_commits_through_the_direct_webhook(self):
        nohttp = _load("nohttp_mqttd")
        webhook = nohttp._DirectWebhook()
        webhook.writer = _Writer()
        clock = Clock()
        store = WebhookSink(clock, WebhookConfig(), webhook, "http://127.0.0.1:1/v1/messages")
        outcome = []
        store.store(message(1)).addBoth(outcome.append)
        clock.advance(0)
        self.assertEqual(outcome, [None])
        self.assertEqual((store.metrics.webhook_committed, [row[0] for row in webhook.writer.rows]), (1, ["k-1"]))
