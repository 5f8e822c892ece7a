"""The batch wire format between broker workers and the ingest webhook (both sides).

A request body is one UTF-8 JSON object with one key per COLUMN; every array holds one
value per message, in the same order::

    {"key": ["9f3c…-1", "9f3c…-2"], "client_id": ["dev-1", "dev-2"],
     "username": ["acme", null], "topic": ["t/1", "t/2"], "qos": [1, 0],
     "retain": [false, true], "received_at": [1767225600.25, 1767225600.5],
     "payload_len": [2, 0], "payload": "AP8="}

``payload`` is every message's exact bytes concatenated in order, as ONE standard padded
base64 string (RFC 4648); ``payload_len`` splits it. ``topic`` is the device's own topic
and a tenth key, ``account``, names each message's account (a string, or null without
one; ``mqttd.namespace``): it is written only when some message of the batch has one,
so a body of messages without accounts is the same as before it existed, and a body
without it stores NULL. The object has exactly these nine keys, or ten with ``account``:
an unknown key is refused rather than dropped, so a newer client can never believe a
field was stored when it was not (an older webhook refuses ``account`` with a 400). The answer to a committed batch is
``{"received": n, "inserted": k, "duplicates": n - k}``; an error is ``{"error": reason}``.

Why columns: with one object per message, decoding was ``json.loads`` plus a Python pass
of about ten checks per message, and that pass (with a Message object per row) cost more
than the parse. Here every rule is checked once per COLUMN by a builtin that loops in C
(``set(map(type, column))``, ``all``, ``set``/``min``/``sum``, ``map(math.isfinite)``,
one ``str.join(...).encode`` per text column, one strict ``a2b_base64`` for all payloads,
split by ``map(BytesIO(data).read, payload_len)``), and ``decode_batch`` returns plain row
tuples (``zip`` of the columns) that go straight to ``executemany``. Encoding is one
comprehension per column and one ``json.dumps``, with ``received_at`` formatted once per
distinct value (``_numbers_text``). Measured numbers: docs/ingest-webhook.md
and benchmarks/bench_wire.py.

``decode_batch`` is strict because the group-commit writer puts many requests in one
transaction: a value SQLite would refuse (a string it cannot encode, a qos of 7) must be
turned back here as a 400 for its own request, not fail a commit shared with others. A
failure names the column and, for per-value rules, the first bad index (found only once
something is known to be wrong, so valid batches never pay for it).
"""
import binascii
import json
import math

import attrs

from mqttd.ingest.wire_decode import decode_batch
from mqttd.ingest.wire_format import ACCOUNT, COLUMNS, FIELDS, WireError, describe_keys
from mqttd.namespace import MOUNT_ROOT, unmount

__all__ = ["ACCOUNT", "BODY_FRAME", "COLUMNS", "CONTENT_TYPE", "FIELDS", "PATH", "BatchResult",
           "WireError", "batch_size_bound", "decode_batch", "decode_result", "encode_batch",
           "encode_error", "encode_result", "size_bound"]

CONTENT_TYPE = "application/json"
PATH = b"/v1/messages"
_FLOAT = {float}
_MOUNTED = MOUNT_ROOT  # what a mounted topic starts with (also found at a join's \x00)


@attrs.frozen
class BatchResult:
    """What the webhook answers once a batch is committed."""

    received: int
    inserted: int

    @property
    def duplicates(self):
        """Messages whose key was already stored (a retry): skipped, not an error."""
        return self.received - self.inserted


# -- client side ----------------------------------------------------------------------

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # ASCII output (ensure_ascii)
_float_repr = float.__repr__


def _numbers_text(values):
    """``values`` as the inside of a JSON array, exactly as ``_ENCODER`` would write it.

    Formatting a float is the biggest cost of encoding a batch (~0.3 us each, 40% of
    the body), and ``received_at`` repeats: every message of one read shares it. So
    each distinct value is formatted once (``float.__repr__``, what JSON's encoder
    writes for a finite float) and looked up, all in C: 100 values in runs of 10 take
    12 us instead of 33. Mostly distinct values are formatted one by one (41 us: the
    checks cost a little). Anything but finite non-zero floats (ints, bools, NaN;
    0.0 and -0.0 are one dict key but two texts) goes through the encoder whole.
    """
    distinct = dict.fromkeys(values)
    if (set(map(type, distinct)) != _FLOAT or 0.0 in distinct
            or not all(map(math.isfinite, distinct))):
        return _ENCODER.encode(values)[1:-1]
    if 2 * len(distinct) > len(values):
        return ",".join(map(_float_repr, values))
    texts = dict(zip(distinct, map(_float_repr, distinct)))
    return ",".join(map(texts.__getitem__, values))


def encode_batch(messages):
    """``messages`` (Message values) as a request body (ASCII JSON bytes)."""
    if type(messages) is not list:
        messages = list(messages)
    payloads = [m.payload for m in messages]
    topics = [m.topic for m in messages]
    document = {
        "key": [m.key for m in messages],
        "client_id": [m.client_id for m in messages],
        "username": [m.username for m in messages],
        "topic": topics,
        "qos": [m.qos for m in messages],
        "retain": [True if m.retain else False for m in messages],
    }
    if _MOUNTED in "\x00".join(topics):  # some are an account's: mounted (one C scan)
        document[ACCOUNT], document["topic"] = _split_mounts(topics)
    columns = _ENCODER.encode(document)
    # received_at is written by _numbers_text, and the base64 alphabet needs no JSON
    # escaping, so the (biggest) payload string is appended as is instead of being
    # scanned by the JSON encoder.
    return b"".join((
        columns[:-1].encode("ascii"),
        b',"received_at":[',
        _numbers_text([m.received_at for m in messages]).encode("ascii"),
        b'],"payload_len":',
        _ENCODER.encode(list(map(len, payloads))).encode("ascii"),
        b',"payload":"',
        binascii.b2a_base64(b"".join(payloads), newline=False),
        b'"}',
    ))


def _split_mounts(topics):
    """(accounts, the devices' own topics) of the broker's ``topics``."""
    accounts, own = zip(*map(unmount, topics))
    return list(accounts), list(own)


BODY_FRAME = len(encode_batch([])) + len(',"account":[]')
"""The bytes of a body around its values: the ten keys, brackets and quotes."""

# What size_bound counts for one message besides its texts and its payload: a comma in
# each of 8 columns; the quotes of key, client_id, topic and username (or its "null");
# qos (0, 1 or 2); "false"; received_at (a float's repr is at most 24 characters:
# -2.2250738585072014e-308); payload_len (at most 10 digits: a payload is less than
# broker.max_packet_size's bound, 268435460); "null" and a comma in the account column
# (an account's name is in its mounted topic: split, its quotes and the mount's 4
# characters even out).
_PER_MESSAGE = 8 + 2 + 2 + 2 + 4 + 1 + 5 + 24 + 10 + 5


def size_bound(message):
    """At least the bytes ``message`` adds to a body that ``encode_batch`` makes.

    A body of messages takes at most ``BODY_FRAME`` plus the sum of their bounds, so
    the webhook client can cut a batch before it would exceed ``max_body_size``
    without encoding it first (a body over it is refused with 413 and halved, again
    and again: 1 MiB payloads made 1.3 GB bodies). Cheap, so it runs per message:
    lengths only, and one pass over the texts to tell whether they are ASCII. The
    payload takes 4 bytes per 3 (base64, rounded up: the concatenation rounds at most
    once). A text takes at most 6 bytes per character when it is ASCII (the escape of
    a control character, ``\\u001f``) and at most 12 otherwise (a character outside
    the BMP is written as two escapes, ``\\ud83d\\ude00``): an upper bound, loose
    for ordinary topics, which matters only once a batch nears the budget.
    """
    key, client_id, username, topic, payload, _, _, received_at = message
    chars = len(key) + len(client_id) + len(topic)
    ascii_only = key.isascii() and client_id.isascii() and topic.isascii()
    if username is not None:
        chars += len(username)
        ascii_only = ascii_only and username.isascii()
    bound = _PER_MESSAGE + (len(payload) + 2) // 3 * 4 + chars * (6 if ascii_only else 12)
    if type(received_at) is not float:  # the broker's are floats; an int's repr is longer
        bound += len(_ENCODER.encode(received_at))
    return bound


def batch_size_bound(messages):
    """At least ``len(encode_batch(messages))``, without encoding and in C loops only.

    Looser than ``BODY_FRAME`` plus the sum of ``size_bound`` (every text at 12 bytes a
    character), so a batch it admits needs no look at its messages one by one: the
    webhook client's fast path, for batches far from the budget (~0.15 us a message).
    """
    if type(messages) is not list:
        messages = list(messages)
    if not messages:
        return BODY_FRAME
    key, client_id, username, topic, payload, _, _, received_at = zip(*messages)
    if not _FLOAT.issuperset(map(type, received_at)):
        return BODY_FRAME + sum(map(size_bound, messages))
    n = len(messages)
    chars = (len("".join(key)) + len("".join(client_id)) + len("".join(topic))
             + len("".join(filter(None, username))))
    # Each payload's share of the base64 is 4 * ceil(len / 3) <= 4 * (len + 2) / 3.
    return (BODY_FRAME + n * _PER_MESSAGE + -(-4 * (sum(map(len, payload)) + 2 * n) // 3)
            + 12 * chars)


_RESULT_KEYS = ("received", "inserted", "duplicates")


def decode_result(body, expected=None):
    """A 200 answer's body as a BatchResult; WireError if it is not exactly one.

    Strict, because a 200 makes the broker acknowledge every message of the batch: an
    unknown key (a ``rejected`` count, say) may report that some were not stored, so it
    is an error, as counts that do not add up (``duplicates == received - inserted``) or
    a ``received`` other than ``expected`` (the batch's size) are. The broker then
    acknowledges none of them.
    """
    try:
        document = json.loads(body)
    except RecursionError:
        # Not a ValueError: escaping, it would leave the batch unsettled (no deadline
        # watches a batch in flight), its client's window full and never answered.
        raise WireError("result: not a batch result: JSON nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise WireError(f"result: not a batch result: {e}") from None
    if type(document) is not dict:
        raise WireError(f"result: not a batch result: a JSON {type(document).__name__}")
    if document.keys() != set(_RESULT_KEYS):
        raise WireError(f"result: must hold exactly received, inserted and duplicates "
                        f"({describe_keys(document, _RESULT_KEYS, ())})")
    received, inserted, duplicates = map(document.__getitem__, _RESULT_KEYS)
    if not (type(received) is type(inserted) is type(duplicates) is int
            and 0 <= inserted <= received and duplicates == received - inserted):
        raise WireError(f"result: counts do not add up: received {received!r}, inserted "
                        f"{inserted!r}, duplicates {duplicates!r}")
    if expected is not None and received != expected:
        raise WireError(f"result: {received} received of {expected} sent")
    return BatchResult(received, inserted)


# -- server side ----------------------------------------------------------------------


def encode_result(result):
    return json.dumps(
        {"received": result.received, "inserted": result.inserted,
         "duplicates": result.duplicates},
        separators=(",", ":"),
    ).encode("ascii")


def encode_error(reason):
    return json.dumps({"error": reason}).encode("ascii")
