"""The batch wire format between broker workers and the ingest webhook (both sides).

A request body is one UTF-8 JSON object::

    {"messages": [{"key": "9f3c…-1", "client_id": "dev-1", "username": "acme",
                   "topic": "t/1", "qos": 1, "retain": false,
                   "received_at": 1767225600.25, "payload": "AP8="}]}

``payload`` is the exact bytes, base64 (RFC 4648, padded). Every object has exactly these
eight keys: an unknown key is refused rather than dropped, so a newer client can never
believe a field was stored when it was not. The answer to a committed batch is
``{"received": n, "inserted": k, "duplicates": n - k}``; an error is ``{"error": reason}``.

Why JSON and not a binary framing: decoding is ``json.loads`` and strict ``a2b_base64`` (both C)
plus one Python pass of type checks per message, and that pass is what a binary framing
would also need; measured on this box (benchmarks in docs/ingest-webhook.md) the JSON
decode of a 500-message batch costs a small fraction of the SQLite commit it feeds, while
JSON stays readable in logs and testable with curl.

``decode_batch`` is strict because the group-commit writer puts many requests in one
transaction: a value SQLite would refuse (a string it cannot encode, a qos of 7) must be
turned back here as a 400 for its own request, not fail a commit shared with others.
"""
import binascii
import json
import math
from base64 import b64encode

import attrs

from mqttd.store.interface import Message

CONTENT_TYPE = "application/json"
PATH = b"/v1/messages"
FIELDS = ("key", "client_id", "username", "topic", "qos", "retain", "received_at", "payload")
_FIELD_SET = frozenset(FIELDS)


class WireError(ValueError):
    """A malformed batch; the message says where (``messages[3].qos: ...``)."""


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


def encode_batch(messages):
    """``messages`` (Message values) as a request body (ASCII JSON bytes)."""
    return json.dumps(
        {
            "messages": [
                {
                    "key": m.key,
                    "client_id": m.client_id,
                    "username": m.username,
                    "topic": m.topic,
                    "qos": m.qos,
                    "retain": bool(m.retain),
                    "received_at": m.received_at,
                    "payload": b64encode(m.payload).decode("ascii"),
                }
                for m in messages
            ]
        },
        separators=(",", ":"),
    ).encode("ascii")


def decode_result(body):
    """A 200 answer's body as a BatchResult; WireError if it is not one."""
    try:
        document = json.loads(body)
        received, inserted = document["received"], document["inserted"]
    except (ValueError, TypeError, KeyError) as e:
        raise WireError(f"result: not a batch result: {e}") from None
    if type(received) is not int or type(inserted) is not int or not 0 <= inserted <= received:
        raise WireError(f"result: bad counts {received!r}, {inserted!r}")
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


def _no_constant(name):
    raise WireError(f"body: {name} is not a number JSON allows")


def _text(value):
    """A str SQLite can store as UTF-8 (JSON escapes can carry lone surrogates)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe_keys(item):
    missing = [f for f in FIELDS if f not in item]
    unknown = sorted(k for k in item if k not in _FIELD_SET)
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown {', '.join(unknown)}")
    return "; ".join(parts)


def decode_batch(body):
    """A request body as a list of Message; WireError naming the first bad field."""
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(f"body: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise WireError("body: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise WireError(f"body: invalid JSON: {e}") from None
    if type(document) is not dict:
        raise WireError("body: must be a JSON object with a \"messages\" list")
    if document.keys() != {"messages"}:
        raise WireError(f"body: must have exactly the key \"messages\", got {sorted(document)}")
    items = document["messages"]
    if type(items) is not list:
        raise WireError("messages: must be a list")
    return [_message(i, item) for i, item in enumerate(items)]


def _message(i, item):
    if type(item) is not dict:
        raise WireError(f"messages[{i}]: must be an object")
    if item.keys() != _FIELD_SET:
        raise WireError(f"messages[{i}]: {_describe_keys(item)}")
    key = item["key"]
    if not key or not _text(key):
        raise WireError(f"messages[{i}].key: must be a non-empty string")
    client_id = item["client_id"]
    if not _text(client_id):
        raise WireError(f"messages[{i}].client_id: must be a string")
    username = item["username"]
    if username is not None and not _text(username):
        raise WireError(f"messages[{i}].username: must be a string or null")
    topic = item["topic"]
    if not topic or not _text(topic):
        raise WireError(f"messages[{i}].topic: must be a non-empty string")
    qos = item["qos"]
    if type(qos) is not int or not 0 <= qos <= 2:
        raise WireError(f"messages[{i}].qos: must be 0, 1 or 2, got {qos!r}")
    retain = item["retain"]
    if type(retain) is not bool:
        raise WireError(f"messages[{i}].retain: must be true or false, got {retain!r}")
    received_at = item["received_at"]
    if type(received_at) not in (int, float) or not (
        0 <= received_at and math.isfinite(received_at)
    ):
        raise WireError(
            f"messages[{i}].received_at: must be unix seconds (a number >= 0), got {received_at!r}"
        )
    payload = item["payload"]
    if type(payload) is not str:
        raise WireError(f"messages[{i}].payload: must be a base64 string")
    try:
        # strict: only the alphabet, correct padding, nothing after it (RFC 4648).
        payload = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise WireError(f"messages[{i}].payload: invalid base64 ({e})") from None
    return Message(key, client_id, username, topic, payload, qos, retain, float(received_at))
