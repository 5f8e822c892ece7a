"""Batches are cut to fit the webhook's max_body_size (issue 11, point 3).

1 MiB payloads made 1.3 GB bodies: every one was refused with 413 and halved again
and again. Now the client bounds each message's encoded size (``wire.size_bound``)
and cuts a batch before its body could pass the budget, and the config makes sure
any one message the broker can take fits in it.
"""
import json

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.resource import Resource

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.codec import Connect, Parser, Publish, encode
from mqttd.config import AuthConfig, BrokerConfig, ConfigError, WebhookConfig, parse_config
from mqttd.ingest.client import WebhookSink
from mqttd.ingest.resource import IngestResource
from mqttd.ingest.wire import BODY_FRAME, batch_size_bound, decode_batch, encode_batch, size_bound
from mqttd.ingest.writer import BatchWriter
from mqttd.store.sink import Message
from mqttd.store.memory import InMemorySink
from tests.support.store import inline_store

URL = "http://ingest.invalid/v1/messages"

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_messages = st.lists(st.builds(
    Message, key=_text.filter(bool), client_id=_text, username=st.none() | _text,
    topic=_text.filter(bool), payload=st.binary(max_size=300), qos=st.sampled_from((0, 1, 2)),
    retain=st.booleans(),
    received_at=st.floats(min_value=0, allow_nan=False, allow_infinity=False)
    | st.integers(min_value=0, max_value=10 ** 30)), max_size=30)


class SizeBoundTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(_messages)
    def test_a_body_is_within_its_bounds(self, messages):
        size = len(encode_batch(messages))
        exact_bound = BODY_FRAME + sum(map(size_bound, messages))
        self.assertLessEqual(size, exact_bound)
        self.assertLessEqual(exact_bound, batch_size_bound(messages))

    def test_the_worst_texts(self):
        """Control characters are 6 bytes of JSON each, characters outside the BMP 12."""
        for char in ("\x01", '"', "\\", "\u00e9", "\U0001f600"):
            text = char * 1000
            m = Message(text, text, text, text, b"\xff" * 1000, 2, True, 1.2345678901234567e+300)
            self.assertLessEqual(len(encode_batch([m])), BODY_FRAME + size_bound(m), repr(char))


def _largest_legal(broker_config, text):
    """The message of ``broker_config`` whose JSON is biggest: ``text`` repeated for the
    topic (and the rest of the packet as payload), the username and the client id, each
    as long as a legal PUBLISH / CONNECT of at most max_packet_size allows (checked
    with the codec's own parser)."""
    size = broker_config.max_packet_size
    unit = len(text.encode("utf-8"))

    topic = text * (min(65535, size - 16) // unit)
    payload = b"\x00" * (size - len(encode(Publish(topic, b"", 1, False, False, 1))))
    room = min(65535, (size - 32) // 2) // unit
    client_id = text * min(room, broker_config.max_clientid_len)
    username = text * room
    connect = encode(Connect(client_id, True, 0, username, b"", None))
    publish = encode(Publish(topic, payload, 1, False, False, 1))
    assert len(connect) <= size and len(publish) <= size, (len(connect), len(publish))
    assert len(Parser(size, server=True).feed(connect + publish)) == 2
    broker = Broker(Clock(), broker_config, InMemorySink(),
                    StaticAuthenticator(AuthConfig(allow_anonymous=True)))
    return broker.make_message(client_id, username, topic, payload, 1, False,
                               1.2345678901234567e+300)


class ConfigHonestyTests(unittest.TestCase):
    """The smallest body size the config accepts holds any one message (it used to
    demand 2 x max_packet_size + 4096, which a long topic, username and client id of
    control characters pass: ~2.5 MB of JSON for a 1 MiB packet)."""

    def smallest_accepted(self, key, document):
        low, high = 1024, 1_000_000_000
        section, name = key.split(".")
        while low < high:
            middle = (low + high) // 2
            try:
                parse_config(dict(document, **{section: {name: middle}}))
            except ConfigError as e:
                self.assertIn(key, str(e))
                low = middle + 1
            else:
                high = middle
        return low

    def check(self, key, document):
        broker_config = parse_config(document).broker
        budget = self.smallest_accepted(key, document)
        for text in ("\x01", "\u00e9a", "\U0001f600"):
            m = _largest_legal(broker_config, text)
            self.assertLessEqual(len(encode_batch([m])), budget, (key, document, repr(text)))
            self.assertLessEqual(BODY_FRAME + size_bound(m), budget, (key, document, repr(text)))

    def test_the_built_in_tier_takes_any_one_message(self):
        for broker in ({}, {"max_packet_size": 65536}, {"max_packet_size": 4096},
                       {"max_packet_size": 64}, {"max_clientid_len": 23}):
            self.check("ingest.max_body_size", {"broker": broker})

    def test_the_client_budget_for_an_external_webhook(self):
        self.check("webhook.max_body_size", {"webhook": {"url": "http://ingest.example:8080/"}})
        self.check("webhook.max_body_size", {"broker": {"max_packet_size": 10_000},
                                             "webhook": {"url": "http://ingest.example:8080/"}})

    def test_the_client_budget_defaults_to_the_ingest_one(self):
        config = parse_config({"ingest": {"max_body_size": 8_000_000}})
        self.assertEqual(config.webhook.max_body_size, 8_000_000)
        config = parse_config({"ingest": {"max_body_size": 8_000_000},
                               "webhook": {"max_body_size": 5_000_000}})
        self.assertEqual(config.webhook.max_body_size, 5_000_000)

    def test_the_built_in_tier_must_take_what_the_client_sends(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"webhook": {"max_body_size": 20_000_000}})
        self.assertEqual(str(caught.exception),
                         "webhook.max_body_size: must be at most ingest.max_body_size (16777216) "
                         "for the built-in tier (bigger bodies get 413), got 20000000")
        # Pointed elsewhere, the budget is the other service's business.
        config = parse_config({"webhook": {"url": "http://ingest.example/",
                                           "max_body_size": 20_000_000}})
        self.assertEqual(config.webhook.max_body_size, 20_000_000)


class Recording(Resource):
    """Records each request's body size and answer code, then lets ``inner`` answer."""

    isLeaf = True

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.sizes = []
        self.codes = []

    def render(self, request):
        self.sizes.append(len(request.content.read()))
        request.content.seek(0)
        request.notifyFinish().addCallback(lambda _: self.codes.append(request.code))
        return self.inner.render(request)


class CutTests(unittest.TestCase):
    def test_big_payloads_never_get_a_413_from_the_real_ingest_resource(self):
        """40 messages of 256 kB: before, one 14 MB body, refused and halved three times
        before the halves fit; now each batch is cut to fit at once."""
        budget = 2_800_000
        store, clock, _ = inline_store(self)
        writer = BatchWriter(clock, store, batch_size=1000, flush_interval=0.0)
        recording = Recording(IngestResource(writer, "budget-test-secret", max_body_size=budget))
        http = StubTreq(recording)
        config = attrs.evolve(WebhookConfig(), max_body_size=budget, linger=0.0)
        client = WebhookSink(clock, config, http, "http://ingest.invalid/",
                              secret="budget-test-secret")
        messages = [Message(f"k-{n}", "dev", None, "t/big", bytes([n]) * 262_000, 1, False, 1.0)
                    for n in range(40)]
        done = []
        for m in messages:
            client.store(m).addCallback(done.append)
        for _ in range(50):
            clock.advance(0)
            http.flush()
        self.assertEqual((len(done), client.metrics.webhook_committed, client.metrics.webhook_rejected), (40, 40, {}))
        self.assertNotIn(413, recording.codes)
        self.assertEqual(set(recording.codes), {200})
        self.assertLessEqual(max(recording.sizes), budget)
        self.assertLessEqual(len(recording.sizes), 10)  # a few messages per body, not 1
        rows = store.run(lambda db: db.execute(
            "SELECT key, length(payload) FROM messages ORDER BY key").fetchall())
        rows.addCallback(lambda rows: self.assertEqual(
            sorted(rows), sorted((m.key, 262_000) for m in messages)))
        return rows

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 40_000), st.sampled_from(("t", "é" * 30, "\x01" * 50))),
                    min_size=1, max_size=60),
           st.integers(1, 200))
    def test_no_body_passes_the_budget(self, sizes, batch_size):
        """Against an answerer that refuses (413) anything over the budget."""
        budget = 100_000
        bodies = []

        class Strict(Resource):
            isLeaf = True

            def render_POST(self, request):
                body = request.content.read()
                bodies.append(len(body))
                if len(body) > budget:
                    request.setResponseCode(413)
                    return b'{"error": "too big"}'
                n = len(decode_batch(body))
                return json.dumps({"received": n, "inserted": n, "duplicates": 0}).encode()

        clock = Clock()
        http = StubTreq(Strict())
        config = attrs.evolve(WebhookConfig(), max_body_size=budget, linger=0.0,
                              batch_size=batch_size, pool_size=4)
        client = WebhookSink(clock, config, http, URL)
        failed = []
        for n, (size, topic) in enumerate(sizes):
            d = client.store(Message(f"k-{n}", "dev", "u", topic, b"x" * size, 1, False, 1.0))
            d.addErrback(failed.append)
        for _ in range(len(sizes) + 5):
            clock.advance(0)
            http.flush()
        self.assertEqual((client.metrics.webhook_committed, client.metrics.webhook_pending, client.metrics.webhook_rejected, failed),
                         (len(sizes), 0, {}, []))
        self.assertLessEqual(max(bodies), budget)
