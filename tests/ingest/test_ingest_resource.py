"""The ingest webhook: status codes, 'answer only after COMMIT', the wire format, config.

Unit tests render IngestResource with DummyRequest over the real writer and a real
SQLite file (InlinePool; task.Clock). ``LoopbackTests`` run the whole tier on a real
127.0.0.1 port with the real thread pool and POST with treq over its own pool.
"""
import contextlib
import io
import json
import os
import sqlite3
from base64 import b64encode
from io import BytesIO

import attrs
import twisted.test
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.test.requesthelper import DummyChannel, DummyRequest
from treq.client import HTTPClient

from mqttd.config import ConfigError, IngestConfig, WebhookConfig, load_config, parse_config
from mqttd.ingest.client import StoreRejected, WebhookSink
from mqttd.ingest.http_client import build_http_client
from mqttd.ingest.request import IngestRequest
from mqttd.ingest.resource import build_ingest_site
from mqttd.ingest import wire
from mqttd.ingest.wire import (
    COLUMNS,
    BatchResult,
    WireError,
    decode_batch,
    decode_result,
    encode_batch,
    encode_result,
)
from mqttd.ingest.writer import BatchWriter
from mqttd.store import sqlite
from mqttd.store.sink import ROW
from mqttd.store.sqlite import SqliteStore, message_row
from tests.support.ingest import AUTH, SECRET, ResourceTestCase
from tests.support.store import fired, make_dir, message

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SHIPPED = os.path.join(HERE, os.pardir, "etc", "mqttd.toml")
TEST_PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


def item(**overrides):
    """One valid message as a dict (``payload`` as raw bytes), with ``overrides``."""
    fields = {"key": "k1", "client_id": "dev-1", "username": "acme", "topic": "t/1",
              "qos": 1, "retain": False, "received_at": 1.5, "payload": b"\x00\xff"}
    fields.update(overrides)
    return fields


DROP = object()


def document(*items, **columns):
    """The columnar body of ``items`` as a dict; ``columns`` replace whole columns (or the
    payload string), ``DROP`` removes one, any other name adds it."""
    doc = {name: [it[name] for it in items] for name in COLUMNS if name != "payload_len"}
    doc["payload_len"] = [len(it["payload"]) for it in items]
    doc["payload"] = b64encode(b"".join(it["payload"] for it in items)).decode("ascii")
    for name, value in columns.items():
        if value is DROP:
            del doc[name]
        else:
            doc[name] = value
    return doc


def body(*items, **columns):
    return json.dumps(document(*items, **columns)).encode()


def bad(**overrides):
    """A body whose SECOND message has ``overrides``: a 400 for it also proves that
    nothing of a malformed body is stored (the first message is valid)."""
    return body(item(key="good"), item(**{"key": "k2", **overrides}))


class AcceptTests(ResourceTestCase):
    def test_200_only_after_commit(self):
        self.pool.hold = True
        request = self.post(body(item(key="a"), item(key="b", payload=b"")))
        self.clock.advance(0.005)
        self.assertEqual(len(self.pool.jobs), 1)  # the COMMIT is running...
        self.assertEqual((request.finished, request.responseCode, request.written), (0, None, []))
        self.pool.run_next()  # ...and has now returned
        self.assertEqual((request.finished, request.responseCode), (1, 200))
        self.assertEqual(self.answer(request), {"received": 2, "inserted": 2, "duplicates": 0})
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"application/json"])
        self.assertEqual(self.stored(), 2)

    def test_retried_body_counts_duplicates(self):
        data = body(item(key="a"), item(key="b"))
        first = self.post(data)
        self.clock.advance(0.005)
        again = self.post(data)
        self.clock.advance(0.005)
        self.assertEqual(self.answer(first)["inserted"], 2)
        self.assertEqual(self.answer(again), {"received": 2, "inserted": 0, "duplicates": 2})
        self.assertEqual(self.stored(), 2)

    def test_disconnected_client_gets_no_write_but_rows_commit(self):
        request = self.post(body(item(key="a")))
        request.processingFailed(Exception("connection lost"))
        self.clock.advance(0.005)
        self.assertEqual((request.written, request.finished), ([], 0))
        self.assertEqual(self.stored(), 1)
        self.assertEqual(self.resource.metrics.ingest_requests["accepted"], 1)

    def test_commit_failure_is_500_and_nothing_stored(self):
        other = sqlite3.connect(self.store.path)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        request = self.post(body(item(key="a")))
        self.clock.advance(0.005)
        self.assertEqual(request.responseCode, 500)
        self.assertIn("commit failed, nothing stored", self.answer(request)["error"])
        self.flushLoggedErrors(sqlite3.OperationalError)
        other.rollback()
        self.assertEqual(self.stored(), 0)


class RefuseTests(ResourceTestCase):
    MALFORMED = [
        # the body
        (b"\xff\xfe", "body: not UTF-8"),
        (b"{", "body: invalid JSON"),
        (b"[]", "body: must be a JSON object"),
        (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
        (body(item(), topic=DROP), "body: missing topic"),
        (body(item(), payload_len=DROP, payload=DROP), "body: missing payload_len, payload"),
        (body(item(), colour=["red"]), "body: unknown colour"),
        (json.dumps({"messages": [document(item())]}).encode(),
         "body: missing key, client_id, username, topic, qos, retain, received_at, "
         "payload_len, payload; unknown messages"),
        # the columns' shape
        (body(item(), qos={"0": 1}), "qos: must be an array"),
        (body(item(), key="k1"), "key: must be an array"),
        (body(item(), payload_len=None), "payload_len: must be an array"),
        (body(item(key="a"), item(key="b"), qos=[1]), "qos: has 1 values, key has 2"),
        (body(item(key="a"), received_at=[1.0, 2.0]), "received_at: has 2 values, key has 1"),
        # text columns
        (bad(key=""), "key[1]: must be a non-empty string, got ''"),
        (bad(key=7), "key[1]: must be a non-empty string, got 7"),
        (bad(key=None), "key[1]: must be a non-empty string, got None"),
        (bad(key="\udfff"), "key[1]: must be a non-empty string"),
        (bad(client_id=None), "client_id[1]: must be a string, got None"),
        (bad(client_id=["dev"]), "client_id[1]: must be a string, got ['dev']"),
        (bad(client_id="dev-\ud800"), "client_id[1]: must be a string"),
        (bad(username=3), "username[1]: must be a string or null, got 3"),
        (bad(username=False), "username[1]: must be a string or null, got False"),
        (bad(username="\ud800x"), "username[1]: must be a string or null"),
        (bad(topic=""), "topic[1]: must be a non-empty string, got ''"),
        (bad(topic={}), "topic[1]: must be a non-empty string, got {}"),
        (bad(topic="\ud800"), "topic[1]: must be a non-empty string"),
        # qos, retain
        (bad(qos=3), "qos[1]: must be 0, 1 or 2, got 3"),
        (bad(qos=-1), "qos[1]: must be 0, 1 or 2, got -1"),
        (bad(qos=1.0), "qos[1]: must be 0, 1 or 2, got 1.0"),
        (bad(qos=True), "qos[1]: must be 0, 1 or 2, got True"),
        (bad(qos=None), "qos[1]: must be 0, 1 or 2, got None"),
        (bad(qos="1"), "qos[1]: must be 0, 1 or 2, got '1'"),
        (bad(retain=1), "retain[1]: must be true or false, got 1"),
        (bad(retain=None), "retain[1]: must be true or false, got None"),
        (bad(retain="false"), "retain[1]: must be true or false, got 'false'"),
        # received_at
        (bad(received_at="now"), "received_at[1]: must be unix seconds"),
        (bad(received_at=None), "received_at[1]: must be unix seconds"),
        (bad(received_at=True), "received_at[1]: must be unix seconds"),
        (bad(received_at=-1), "received_at[1]: must be unix seconds (a finite number >= 0), "
                              "got -1.0"),
        (bad(received_at=-0.5), "received_at[1]: must be unix seconds"),
        (bad(received_at=10 ** 400), "received_at[1]: must be unix seconds"),
        (body(item(key="good"), item(key="k2"), received_at=[1.0, "X"]).replace(b'"X"', b"1e999"),
         "received_at[1]: must be unix seconds (a finite number >= 0), got inf"),
        (body(item(key="good"), item(key="k2"), received_at=[1.0, "X"]).replace(b'"X"', b"-1e999"),
         "received_at[1]: must be unix seconds"),
        (body(item(key="good"), item(key="k2"), received_at=[1.0, "X"]).replace(b'"X"', b"NaN"),
         "body: NaN is not a number JSON allows"),
        (body(item(), received_at=["X"]).replace(b'"X"', b"Infinity"),
         "body: Infinity is not a number JSON allows"),
        # payload_len, payload
        (body(item(key="good"), item(key="k2"), payload_len=[3, -1]),
         "payload_len[1]: must be a byte count (an integer >= 0), got -1"),
        (body(item(key="good"), item(key="k2"), payload_len=[1, 1.0]),
         "payload_len[1]: must be a byte count (an integer >= 0), got 1.0"),
        (body(item(key="good"), item(key="k2"), payload_len=[2, True]),
         "payload_len[1]: must be a byte count (an integer >= 0), got True"),
        (body(item(key="good"), item(key="k2"), payload_len=[2, "2"]),
         "payload_len[1]: must be a byte count"),
        (body(item(key="good"), item(key="k2"), payload_len=[2, 3]),
         "payload_len: sums to 5, but payload decodes to 4 bytes"),
        (body(item(key="good"), item(key="k2"), payload_len=[2, 1]),
         "payload_len: sums to 3, but payload decodes to 4 bytes"),
        (body(item(), payload=None), "payload: must be a base64 string"),
        (body(item(), payload=["AP8="]), "payload: must be a base64 string"),
        (body(item(), payload="AP8"), "payload: invalid base64"),
        (body(item(), payload="AP8=\n"), "payload: invalid base64"),
        (body(item(), payload="AP 8="), "payload: invalid base64"),
        (body(item(), payload="A*8="), "payload: invalid base64"),
        (body(item(), payload="AP8=AP8="), "payload: invalid base64"),
        (body(item(), payload="é"), "payload: invalid base64"),
        (body(item(), payload="AP8-"), "payload: invalid base64"),  # urlsafe alphabet
    ]

    def test_400_on_each_malformed_body_and_nothing_stored(self):
        for data, reason in self.MALFORMED:
            request = self.post(data)
            self.assertEqual(request.responseCode, 400, reason)
            self.assertIn(reason, self.answer(request)["error"])
            self.assertEqual(request.finished, 1)
        self.clock.advance(1.0)
        self.assertEqual((self.stored(), self.writer.pending, self.writer.metrics.ingest_commits), (0, 0, 0))
        self.assertEqual(self.resource.metrics.ingest_requests["malformed"], len(self.MALFORMED))

    def test_an_integer_too_long_to_convert_is_a_400(self):
        """Python refuses int literals of more than 4300 digits with a bare ValueError;
        it escaped render as an HTML 500, which tells the client to retry forever."""
        self.resource.max_body_size = 65536
        request = self.post(body(item(), payload_len=["X"]).replace(b'"X"', b"9" * 5000))
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(self.answer(request)["error"],
                         "body: invalid JSON: Exceeds the limit (4300 digits) for integer "
                         "string conversion: value has 5000 digits")
        self.assertEqual((self.resource.metrics.ingest_requests["malformed"], self.writer.pending), (1, 0))

    def test_every_bad_case_is_alone_in_an_otherwise_valid_body(self):
        """Each per-value case above differs from a valid body only where it says."""
        self.assertEqual(len(decode_batch(body(item(key="good"), item(key="k2")))), 2)
        self.assertEqual(len(decode_batch(body(item()))), 1)

    def test_error_names_the_first_bad_index(self):
        request = self.post(body(item(key="a"), item(key="b"), item(key="c", qos=9),
                                 item(key="d", qos=7)))
        self.assertEqual(self.answer(request), {"error": "qos[2]: must be 0, 1 or 2, got 9"})

    def test_error_shows_a_long_bad_value_shortened(self):
        request = self.post(bad(client_id=["x" * 1000]))
        error = self.answer(request)["error"]
        self.assertTrue(error.startswith("client_id[1]: must be a string, got ['xxx"), error)
        self.assertLess(len(error), 120)

    def test_405_for_other_methods(self):
        for method in (b"GET", b"PUT", b"DELETE", b"HEAD"):
            request = self.post(body(item()), method=method)
            self.assertEqual(request.responseCode, 405)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"allow"), [b"POST"])
        self.clock.advance(1.0)
        self.assertEqual(self.stored(), 0)

    def test_404_below_the_resource(self):
        self.assertEqual(self.post(body(item()), postpath=[b"x"]).responseCode, 404)

    def test_413_over_max_body_size(self):
        big = body(*[item(key=f"k{i}") for i in range(100)])
        self.assertGreater(len(big), 4096)
        request = self.post(big)
        self.assertEqual(request.responseCode, 413)
        self.assertIn("max_body_size", self.answer(request)["error"])
        # Declared too big, whatever was buffered:
        request = DummyRequest([])
        request.method = b"POST"
        request.content = BytesIO(body(item()))
        request.requestHeaders.setRawHeaders(b"content-length", [b"999999"])
        request.requestHeaders.setRawHeaders(b"authorization", AUTH[b"Authorization"])
        self.resource.render(request)
        self.assertEqual(request.responseCode, 413)
        self.clock.advance(1.0)
        self.assertEqual(self.stored(), 0)

    def test_bounded_request_stops_buffering(self):
        request = IngestRequest(DummyChannel())
        request.max_body_size = 10
        request.gotLength(None)  # chunked: no declared length
        request.handleContentChunk(b"12345678")
        self.assertFalse(request.body_too_large)
        request.handleContentChunk(b"9abc")
        request.handleContentChunk(b"x" * 1000)
        self.assertTrue(request.body_too_large)
        self.assertEqual(request.content.getvalue(), b"")
        declared = IngestRequest(DummyChannel())
        declared.max_body_size = 10
        declared.gotLength(11)
        self.assertTrue(declared.body_too_large)

    def assertFullThenCommitted(self, waiting_body, refused_body, reason):
        """While a commit is held, ``refused_body`` gets 503 + Retry-After naming
        ``reason``; then ``waiting_body`` commits alone. Returns the committed keys."""
        self.pool.hold = True
        waiting = self.post(waiting_body)
        refused = self.post(refused_body)
        self.assertEqual(refused.responseCode, 503)
        self.assertEqual(refused.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])
        self.assertIn(reason, self.answer(refused)["error"])
        self.clock.advance(0.005)
        self.pool.run_next()
        self.assertEqual(waiting.responseCode, 200)
        self.assertEqual(self.resource.metrics.ingest_requests["unavailable"], 1)
        return sorted(self.query(lambda db: [r[0] for r in db.execute("SELECT key FROM messages")]))

    def test_503_with_retry_after_when_queue_full(self):
        keys = self.assertFullThenCommitted(body(*[item(key=f"a{i}") for i in range(8)]),
                                            body(*[item(key=f"b{i}") for i in range(3)]),
                                            "(max_queue 10)")
        self.assertEqual(keys, [f"a{i}" for i in range(8)])
        self.assertEqual(self.writer.metrics.ingest_rows_refused, 3)

    def test_503_when_the_waiting_bodies_are_too_big(self):
        """The resource counts each request's body against max_queue_bytes."""
        self.writer.max_queue_bytes = 1500
        keys = self.assertFullThenCommitted(body(item(key="a0", payload=b"x" * 600)),
                                            body(item(key="b0", payload=b"y" * 600)),
                                            "(max_queue_bytes 1500)")
        self.assertEqual((keys, self.writer.metrics.ingest_rows_refused), (["a0"], 1))

    def test_503_while_shutting_down(self):
        fired(self.writer.close())
        request = self.post(body(item()))
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])


class WireTests(unittest.TestCase):
    def test_body_is_one_array_per_column(self):
        messages = [message("k1", payload=b"\x00\xff", username=None, qos=0, retain=True),
                    message("k2", payload=b"", received_at=2.25),
                    message("k3", payload=b"abc")]
        self.assertEqual(json.loads(encode_batch(messages)), {
            "key": ["k1", "k2", "k3"], "client_id": ["dev-1"] * 3,
            "username": [None, "acme", "acme"], "topic": ["t/1"] * 3, "qos": [0, 1, 1],
            "retain": [True, False, False], "received_at": [1.0, 2.25, 1.0],
            "payload_len": [2, 0, 3], "payload": "AP9hYmM=",
        })
        self.assertEqual(list(json.loads(encode_batch(messages))), list(wire.FIELDS))

    def test_body_is_what_json_writes(self):
        """encode_batch formats each distinct received_at value once; the body is still
        byte for byte what json.dumps writes for the same document, on each of its
        paths: repeated floats (one read's messages), mostly distinct floats, and
        anything else (an int, an int-valued float, a bool, tiny/huge floats, NaN,
        zeros of both signs, infinity)."""
        t = 1767225600.25
        cases = {
            "repeats": [t, t, t, t + 0.5, t + 0.5, t, 7.0, 7.0],
            "distinct": [t, t + 0.5, 1e-300, 1.7976931348623157e308, 0.1, 7.0],
            "other": [t, t, 7, 7.0, 7.0, True, float("nan"), float("nan"), 0.0, -0.0, 0.0,
                      2.5, float("inf")],
        }
        for name, stamps in cases.items():
            messages = [message(f"k{i}", received_at=stamp, payload=bytes([i]))
                        for i, stamp in enumerate(stamps)]
            document = {
                "key": [m.key for m in messages], "client_id": [m.client_id for m in messages],
                "username": [m.username for m in messages], "topic": [m.topic for m in messages],
                "qos": [m.qos for m in messages], "retain": [m.retain for m in messages],
                "received_at": stamps, "payload_len": [1] * len(stamps),
                "payload": b64encode(bytes(range(len(stamps)))).decode("ascii"),
            }
            self.assertEqual(encode_batch(messages),
                             json.dumps(document, separators=(",", ":")).encode("ascii"), name)

    def test_round_trip_is_exact_rows(self):
        messages = [
            message("k1", payload=b"\x00\xff", username=None, qos=0, retain=True),
            message("k2", client_id="dév-ü", topic="a/ü/☃", payload=bytes(range(256)),
                    received_at=1767225600.123456),
            message("k3", payload=b""),
            message("k4", client_id="", topic="nul\x00in/topic", payload=b"=="),
        ]
        data = encode_batch(messages)
        self.assertTrue(data.isascii())
        rows = decode_batch(data)
        self.assertEqual(rows, [message_row(m) for m in messages])
        self.assertEqual([type(r) for r in rows], [tuple] * 4)
        self.assertEqual([type(r[4]) for r in rows], [bytes] * 4)

    def test_rows_are_in_the_one_row_layout(self):
        """A decoded row holds each Message field where ``ROW`` (defined once, beside
        Message) says, and the SQLite store inserts in that same layout."""
        m = message("k1", client_id="c", username="u", topic="t", payload=b"p", qos=2,
                    retain=True, received_at=1767225600.5)
        (row,) = decode_batch(encode_batch([m]))
        self.assertEqual(dict(zip(ROW, row)), dict(m._asdict(), account=None))
        self.assertIs(sqlite.ROW, ROW)

    def test_empty_batch(self):
        self.assertEqual(decode_batch(encode_batch([])), [])
        self.assertEqual(decode_batch(encode_batch(iter([]))), [])

    def test_encode_takes_any_iterable(self):
        messages = [message("a"), message("b", payload=b"xy")]
        self.assertEqual(encode_batch(iter(messages)), encode_batch(messages))

    def test_received_at_integer_becomes_float(self):
        (row,) = decode_batch(body(item(received_at=7)))
        self.assertEqual((row[7], type(row[7])), (7.0, float))
        rows = decode_batch(body(item(key="a", received_at=0), item(key="b", received_at=2.5)))
        self.assertEqual([(r[7], type(r[7])) for r in rows], [(0.0, float), (2.5, float)])

    def test_text_with_nul_or_non_ascii_is_kept(self):
        (row,) = decode_batch(body(item(key="k\x00", client_id="", username="ü\x00",
                                        topic="☃/\x00")))
        self.assertEqual(row[:4], ("k\x00", "", "ü\x00", "☃/\x00"))

    def test_result_round_trip(self):
        result = BatchResult(5, 3)
        self.assertEqual(result.duplicates, 2)
        self.assertEqual(decode_result(encode_result(result)), result)
        for bad_body in (b"nope", b'{"received": 1}', b'{"received": 1, "inserted": 2}'):
            with self.assertRaises(WireError):
                decode_result(bad_body)

    def test_example_in_docs_decodes(self):
        """The curl example in docs/ingest-webhook.md is a valid body."""
        with open(os.path.join(HERE, os.pardir, "docs", "ingest-webhook.md")) as f:
            text = f.read()
        example = text.split("--data-binary '", 1)[1].split("'", 1)[0]
        rows = decode_batch(example.encode())
        self.assertEqual([r[4] for r in rows], [b"21.5", b"\x00\xff"])

    def test_python_example_in_docs_builds_a_valid_body(self):
        with open(os.path.join(HERE, os.pardir, "docs", "ingest-webhook.md")) as f:
            snippet = f.read().split("```python\n", 1)[1].split("```", 1)[0]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(snippet, {})
        self.assertEqual(decode_batch(out.getvalue().encode()),
                         [("demo-3", "dev-1", None, "t/1", b"\x01\x02", 1, False, 1767225600.75,
                           None)])


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_messages = st.builds(
    lambda i, c, u, t, p, q, r, ts: message(f"k{i}", client_id=c, username=u, topic=t,
                                            payload=p, qos=q, retain=r, received_at=ts),
    st.integers(0, 10**6), _text, st.none() | _text, _text.filter(bool), st.binary(max_size=64),
    st.integers(0, 2), st.booleans(), st.floats(0, 4e9, allow_nan=False, allow_infinity=False),
)


class WirePropertyTests(unittest.TestCase):
    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.lists(_messages, max_size=5))
    def test_any_batch_round_trips(self, messages):
        self.assertEqual(decode_batch(encode_batch(messages)), [message_row(m) for m in messages])

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(st.lists(_messages, min_size=1, max_size=3), st.integers(0, 10**6), st.binary(max_size=3))
    def test_corrupted_body_is_a_wire_error_or_valid(self, messages, where, junk):
        """Any damage either still decodes to rows SQLite takes or is one WireError."""
        data = encode_batch(messages)
        where %= len(data)
        damaged = data[:where] + junk + data[where + len(junk) + 1:]
        try:
            rows = decode_batch(damaged)
        except WireError:
            return
        for key, client_id, username, topic, payload, qos, retain, received_at, account in rows:
            self.assertTrue(account is None or type(account) is str)
            self.assertTrue(key and type(key) is str)
            key.encode("utf-8")
            self.assertIs(type(client_id), str)
            client_id.encode("utf-8")
            self.assertTrue(username is None or type(username) is str)
            self.assertTrue(topic and type(topic) is str)
            topic.encode("utf-8")
            self.assertIs(type(payload), bytes)
            self.assertIn(qos, (0, 1, 2))
            self.assertIs(type(qos), int)
            self.assertIsInstance(retain, bool)
            self.assertIs(type(received_at), float)
            self.assertTrue(0 <= received_at < float("inf"))

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.lists(_messages, min_size=1, max_size=4), st.data())
    def test_one_bad_value_is_named_by_column_and_index(self, messages, data):
        doc = json.loads(encode_batch(messages))
        column, value, reason = data.draw(st.sampled_from([
            ("key", "", "must be a non-empty string"),
            ("client_id", 1, "must be a string"),
            ("username", 0, "must be a string or null"),
            ("topic", "\ud800", "must be a non-empty string"),
            ("qos", 2.0, "must be 0, 1 or 2"),
            ("retain", 0, "must be true or false"),
            ("received_at", -3, "must be unix seconds"),
        ]))
        index = data.draw(st.integers(0, len(messages) - 1))
        doc[column][index] = value
        with self.assertRaises(WireError) as caught:
            decode_batch(json.dumps(doc).encode())
        self.assertTrue(str(caught.exception).startswith(f"{column}[{index}]: {reason}"),
                        str(caught.exception))


class _Authorized:
    """A treq HTTPClient that sends the tier's secret with every request."""

    def __init__(self, http):
        self._http = http

    def post(self, url, headers=None, **kwargs):
        return self._http.post(url, headers={**AUTH, **(headers or {})}, **kwargs)

    def get(self, url, headers=None, **kwargs):
        return self._http.get(url, headers={**AUTH, **(headers or {})}, **kwargs)


class LoopbackTests(unittest.TestCase):
    """The whole tier on 127.0.0.1: real port, real writer, real pool and SQLite."""

    @defer.inlineCallbacks
    def setUp(self):
        self.store = SqliteStore.in_data_dir(reactor, make_dir(self))
        yield self.store.start()
        self.addCleanup(self.store.close)
        self.writer = BatchWriter(reactor, self.store, batch_size=500, flush_interval=5.0,
                                  max_queue=1000)
        self.addCleanup(self.writer.close)
        self.port = reactor.listenTCP(0, build_ingest_site(reactor, self.writer, SECRET, max_body_size=65536),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        self.http = _Authorized(HTTPClient(Agent(reactor, pool=pool)))
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/v1/messages"

    @defer.inlineCallbacks
    def test_post_commit_read_back(self):
        messages = [message(f"k{i}", client_id="dev-7", payload=bytes([i, 0, 255]),
                            received_at=100.0 + i) for i in range(20)]
        data = encode_batch(messages)
        response = yield self.http.post(self.url, data=data,
                                        headers={b"Content-Type": [b"application/json"]})
        self.assertEqual(response.code, 200)
        self.assertEqual(decode_result((yield response.content())), BatchResult(20, 20))
        # A retry of the same batch (say, after a timeout) stores nothing twice.
        response = yield self.http.post(self.url, data=data)
        self.assertEqual(decode_result((yield response.content())), BatchResult(20, 0))
        stored = yield self.store.recent("dev-7", limit=100)
        self.assertEqual(stored, sorted(messages, key=lambda m: -m.received_at))

    @defer.inlineCallbacks
    def test_answer_has_a_length_and_a_form_body_is_not_parsed(self):
        """The 200 is framed by Content-Length (a chunked answer costs both sides more
        per batch), and a body labelled as a form is never parsed as one: the site
        reads bodies only as the wire format (a form label gets a plain 400)."""
        from twisted.web import http as web_http
        parsed = []
        real = web_http._parseContentType
        self.patch(web_http, "_parseContentType", lambda line: parsed.append(line) or real(line))
        response = yield self.http.post(self.url, data=encode_batch([message("len-1")]),
                                        headers={b"Content-Type": [b"application/json"]})
        content = yield response.content()
        self.assertEqual(response.code, 200)
        # Twisted's client keeps framing headers to itself; a chunked answer would show
        # as UNKNOWN_LENGTH here.
        self.assertEqual(response.length, len(content))
        response = yield self.http.post(
            self.url, data=b"key=a&qos=1",
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"]})
        self.assertEqual(response.code, 400)
        yield response.content()
        self.assertEqual(parsed, [])

    @defer.inlineCallbacks
    def test_concurrent_requests_share_commits(self):
        batches = [[message(f"r{r}-{i}", received_at=float(i)) for i in range(10)]
                   for r in range(8)]
        responses = yield defer.gatherResults(
            [self.http.post(self.url, data=encode_batch(b)) for b in batches])
        self.assertEqual([r.code for r in responses], [200] * 8)
        for r in responses:
            yield r.content()
        self.assertEqual((yield self.store.count()), 80)
        self.assertLessEqual(self.writer.metrics.ingest_commits, 8)
        self.assertEqual(self.writer.metrics.ingest_rows_committed, 80)

    @defer.inlineCallbacks
    def test_webhook_store_over_the_real_client(self):
        """The broker's own client (build_http_client: its pool, the whole-body producer)
        against the real tier: bodies of several 64 kB chunks arrive whole, a batch
        over max_body_size (64 kB here) is halved until it fits, and every message is
        committed exactly once."""
        config = WebhookConfig(batch_size=1000, batch_delay=0.0)
        http, pool = build_http_client(reactor, config)
        self.addCleanup(pool.closeCachedConnections)
        store = WebhookSink(reactor, config, http, self.url, secret=SECRET)
        messages = [message(f"big{i}", client_id="dev-9", payload=bytes([i % 256]) * 150,
                            received_at=float(i)) for i in range(600)]
        yield defer.gatherResults([store.store(m) for m in messages])
        self.assertEqual((store.metrics.webhook_committed, store.metrics.webhook_pending, sum(store.metrics.webhook_rejected.values())),
                         (600, 0, 0))
        self.assertEqual((yield self.store.count()), 600)
        stored = yield self.store.recent("dev-9", limit=1000)
        self.assertEqual(sorted(stored), sorted(messages))

    @defer.inlineCallbacks
    def test_errors_over_http(self):
        response = yield self.http.post(self.url, data=body(item(qos=5)))
        self.assertEqual(response.code, 400)
        self.assertIn("qos", json.loads((yield response.content()))["error"])
        response = yield self.http.get(self.url)
        self.assertEqual(response.code, 405)
        yield response.content()
        response = yield self.http.post(self.url, data=b"x" * 70000)
        self.assertEqual(response.code, 413)
        yield response.content()
        response = yield self.http.post(self.url.replace("/v1/messages", "/v1/other"),
                                        data=body(item()))
        self.assertEqual(response.code, 404)
        yield response.content()
        self.assertEqual((yield self.store.count()), 0)

    @defer.inlineCallbacks
    def test_ipv6_literal_webhook_url(self):
        """http://[::1]:PORT/... (what the built-in tier reports when it listens on
        tcp6): the client sends to it as is. hyperlink's to_uri(), which treq ran on
        every request, refuses an IPv6 host, so every batch used to fail."""
        from twisted.internet.endpoints import serverFromString

        site = build_ingest_site(reactor, self.writer, SECRET)
        port = yield serverFromString(reactor, "tcp6:0:interface=\\:\\:1").listen(site)
        self.addCleanup(port.stopListening)
        config = WebhookConfig(ack_timeout=5.0)
        http, pool = build_http_client(reactor, config)
        self.addCleanup(pool.closeCachedConnections)
        webhook = WebhookSink(reactor, config, http,
                               f"http://[::1]:{port.getHost().port}/v1/messages", secret=SECRET)
        yield webhook.store(message("v6-1", client_id="dev-v6"))
        self.assertEqual((site.ingest.metrics.ingest_requests["accepted"], webhook.metrics.webhook_committed), (1, 1))
        self.assertEqual([m.key for m in (yield self.store.recent("dev-v6"))], ["v6-1"])

    @defer.inlineCallbacks
    def _tls_ingest_url(self):
        """The tier over TLS on 127.0.0.1 with Twisted's test certificate (SAN localhost)."""
        from twisted.internet.endpoints import serverFromString

        site = build_ingest_site(reactor, self.writer, SECRET)
        port = yield serverFromString(
            reactor, f"ssl:0:privateKey={TEST_PEM}:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        return site, f"https://127.0.0.1:{port.getHost().port}/v1/messages"

    @defer.inlineCallbacks
    def test_https_webhook_with_a_trusted_certificate_commits(self):
        """The https path of build_http_client (its endpoint, built once, wrapped in TLS)
        delivers batches to a webhook whose certificate the policy trusts."""
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        site, url = yield self._tls_ingest_url()
        with open(TEST_PEM, "rb") as f:
            trusted = Certificate.loadPEM(f.read())

        class TrustTestCertificate:
            def creatorForNetloc(self, hostname, port):
                return optionsForClientTLS("localhost", trustRoot=trusted)

        config = WebhookConfig(ack_timeout=5.0)
        http, pool = build_http_client(reactor, config, tls_policy=TrustTestCertificate())
        self.addCleanup(pool.closeCachedConnections)
        webhook = WebhookSink(reactor, config, http, url, secret=SECRET)
        messages = [message(f"tls-ok-{i}", client_id="dev-tls") for i in range(3)]
        yield defer.gatherResults([webhook.store(m) for m in messages])
        yield webhook.store(message("tls-ok-3", client_id="dev-tls"))  # a second request
        self.assertEqual(site.ingest.metrics.ingest_requests["accepted"], 2)
        self.assertEqual((yield self.store.count()), 4)

    @defer.inlineCallbacks
    def test_https_webhook_with_an_unverifiable_certificate_gets_nothing(self):
        """An https webhook URL goes over TLS and the server's certificate is verified:
        the broker never hands messages to a webhook it cannot authenticate (here a
        self-signed one), it retries until the ack timeout and acknowledges nothing."""
        from twisted.logger import globalLogPublisher

        site, url = yield self._tls_ingest_url()
        config = WebhookConfig(ack_timeout=1.0, retry_initial=0.05, retry_max=0.1)
        http, pool = build_http_client(reactor, config)
        self.addCleanup(pool.closeCachedConnections)
        webhook = WebhookSink(reactor, config, http, url, secret=SECRET)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        failure = yield self.assertFailure(webhook.store(message("tls-1")), StoreRejected)
        self.assertEqual(failure.reason, "ack timeout")
        self.assertGreater(sum(webhook.metrics.webhook_retried.values()), 0)
        self.assertEqual(site.ingest.metrics.ingest_requests["accepted"] + site.ingest.metrics.ingest_requests["malformed"], 0)  # no request got in
        self.assertEqual((yield self.store.count()), 0)
        # Refused by TLS verification (the name, here 127.0.0.1, or the issuer), not
        # for want of TLS support.
        self.assertRegex(" ".join(str(e.get("error", "")) for e in events),
                         r"VerificationError|certificate verify failed")


class IngestConfigTests(unittest.TestCase):
    def test_shipped_file_names_every_ingest_key(self):
        config = load_config(SHIPPED)
        self.assertEqual(config.ingest, IngestConfig())
        with open(SHIPPED) as f:
            text = f.read()
        self.assertIn("[ingest]", text)
        for field in attrs.fields(IngestConfig):
            self.assertIn(f"\n{field.name} = ", text)

    def test_defaults(self):
        ingest = IngestConfig()
        self.assertEqual(
            (ingest.batch_size, ingest.flush_interval, ingest.max_queue,
             ingest.max_queue_bytes, ingest.synchronous),
            (1000, 0.0, 50000, 256 * 1024 * 1024, "FULL"),
        )
        self.assertIn("interface=127.0.0.1", ingest.listen)

    def test_synchronous_choices(self):
        self.assertEqual(parse_config({"ingest": {"synchronous": "NORMAL"}}).ingest.synchronous,
                         "NORMAL")
        for bad in ("X", "full"):
            with self.assertRaises(ConfigError) as caught:
                parse_config({"ingest": {"synchronous": bad}})
            self.assertEqual(str(caught.exception),
                             f"ingest.synchronous: must be one of FULL, NORMAL, OFF, got {bad!r}")

    def test_bounds(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ingest": {"batch_size": 0}})
        self.assertEqual(str(caught.exception), "ingest.batch_size: must be 1..1000000, got 0")

