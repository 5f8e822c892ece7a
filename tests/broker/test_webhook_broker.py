"""The broker over the real webhook client: a QoS 2 retransmission waits for a retried
original; wills that fail are counted, and no will or dead connection makes the
client linger.
"""
from twisted.trial import unittest

from mqttd.codec import Pubcomp, Pubrec, Pubrel, Will
from tests.support.broker import Harness, ManualStore, pub, publishes


class WebhookReorderTests(unittest.TestCase):
    def test_qos2_retransmission_waits_for_a_retried_original(self):
        """End to end with the real WebhookSink (pool_size 1): the dropped connection's
        batch gets a 503 and waits in backoff, its slot free; the retransmission is not
        stored a second time, and its PUBREC comes once the original's retry commits."""
        from treq.testing import StubTreq

        from mqttd.broker.broker import Broker
        from mqttd.broker.protocol import MQTTServerFactory
        from mqttd.config import WebhookConfig
        from mqttd.ingest.client import WebhookSink
        from tests.support.webhook import URL, Webhook

        h = Harness()
        webhook = Webhook([503])  # the first request: 503 (Retry-After 1), then 200s
        http = StubTreq(webhook)
        store = WebhookSink(h.clock, WebhookConfig(), http, URL, random=lambda: 1.0)
        h.broker = Broker(h.clock, h.config, store, h.authenticator)
        h.factory = MQTTServerFactory(h.broker, h.clock)

        def tick(seconds=0.0):
            h.clock.advance(seconds)
            http.flush()

        sub = h.subscriber("t/#", qos=2)
        old = h.client("dev", clean=False)
        old.send(pub("t/1", b"A", qos=2, pid=7))
        tick()  # 503: backoff
        old.lose()
        new = h.client("dev", clean=False)
        new.send(pub("t/1", b"A", qos=2, pid=7, dup=True))
        tick()
        self.assertEqual((len(webhook.bodies), new.received()), (1, []))  # waits for it
        tick(1.0)  # the original's retry: committed
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"A"])
        self.assertEqual(new.received(), [Pubrec(7)])
        new.send(Pubrel(7))
        self.assertEqual(new.received(), [Pubcomp(7)])
        new.send(pub("t/1", b"B", qos=2, pid=7))  # id 7 reused: a new message
        tick(0.01)
        self.assertEqual(len(webhook.bodies), 3)  # A twice (503, then 200), B once
        self.assertEqual(new.received(), [Pubrec(7)])
        self.assertEqual([m.payload for m in publishes(sub.received())], [b"B"])
        # One row per message: the retransmission of A was not stored a second time.
        self.assertEqual(sorted(webhook.stored.values()), [b"A", b"B"])


class WillStoreTests(unittest.TestCase):
    def test_a_will_the_store_fails_is_logged_and_counted(self):
        """Nobody resends a lost will: its failure must be seen."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = ManualStore()
        h = Harness(store=store)
        h.client("dev", will=Will("t/status", b"offline", 1, retain=True)).lose()
        store.fail(0)
        self.assertEqual((h.broker.metrics.mqtt_publish_not_stored, h.broker.metrics.mqtt_wills_published), (1, 1))
        self.assertIn("will of {client_id} not stored, not published: {reason}",
                      [e.get("log_format") for e in events])
        self.assertEqual(h.broker.retained.get("t/status"), None)

    def test_a_connection_gone_before_its_answer_does_not_make_the_client_linger(self):
        """mosquitto_pub -q 0 sends PUBLISH then DISCONNECT; a device that published
        just before it died: neither publishes again, so the next batch must not wait
        for them, nor linger be turned off."""
        from tests.support.webhook import Harness as WebhookHarness

        for will in (None, Will("w", b"bye", 0, retain=False)):
            webhook = WebhookHarness(self, linger=0.001)
            h = Harness(store=webhook.store)
            live = h.client("live")
            dev = h.client("dev", will=will)
            live.send(pub("t/a", b"1", qos=1, pid=1))
            dev.send(pub("t/b", b"x", qos=1, pid=1))
            dev.lose()
            webhook.tick()
            self.assertEqual(len(webhook.webhook.bodies), 1)
            live.received()
            live.send(pub("t/a", b"2", qos=1, pid=2))
            webhook.tick()
            self.assertEqual(len(webhook.webhook.bodies), 2, will)  # not held for "dev"
            self.assertTrue(webhook.store._linger._prompt)

    def test_one_broken_will_does_not_keep_the_others_of_its_batch(self):
        """One answer settles the wills of many clients in one call."""
        from tests.support.webhook import Harness as WebhookHarness

        webhook = WebhookHarness(self)
        h = Harness(store=webhook.store)
        sub = h.subscriber("w/#")
        first = h.client("a", will=Will("w/a", b"a gone", 0, retain=False))
        second = h.client("b", will=Will("w/b", b"b gone", 0, retain=False))

        route = h.broker.route

        def broken(message):
            if message.topic == "w/a":
                raise RuntimeError("a bug")
            route(message)

        h.broker.route = broken
        first.lose()
        second.lose()
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 1)  # both wills, one batch
        self.assertEqual([p.payload for p in publishes(sub.received())], [b"b gone"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_will_does_not_make_the_webhook_client_linger(self):
        """The webhook client's linger waits for the connections an answer
        acknowledged; a will stands for none and must not be waited for."""
        from tests.support.webhook import Harness as WebhookHarness

        webhook = WebhookHarness(self, linger=0.001)
        h = Harness(store=webhook.store)
        live = h.client("live")
        dev = h.client("dev", will=Will("w", b"bye", 0, retain=False))
        live.send(pub("t/a", b"1", qos=1, pid=1))
        dev.lose()  # the will joins the same batch
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 1)
        live.received()
        live.send(pub("t/a", b"2", qos=1, pid=2))
        webhook.tick()
        self.assertEqual(len(webhook.webhook.bodies), 2)  # not held for the will
        self.assertFalse(webhook.store._linger._holding)
