"""Decoding a batch body on the ingest side (``mqttd.ingest.wire`` says the format).

Strict, column by column: a value SQLite would refuse must come back as a 400 for its
own request, not fail a group commit shared with others (see ``mqttd.ingest.wire``).
"""
import binascii
import json
import math
from io import BytesIO
from itertools import repeat
from operator import itemgetter

from mqttd.ingest.wire_format import (
    ACCOUNT, COLUMNS, FIELD_SET, FIELD_SET_ACCOUNTS, JSON_DECODER, WireError, describe_keys,
)
from mqttd.namespace import valid_account

__all__ = ["decode_batch"]

_NONE = type(None)
_STR_OR_NONE = frozenset({str, _NONE})
_STR = frozenset({str})
_INT = frozenset({int})
_BOOL = frozenset({bool})
_NUMBER = frozenset({int, float})
_QOS = frozenset({0, 1, 2})


def _bad(name, column, is_bad, rule):
    """The WireError for the first value of ``column`` where ``is_bad`` (error path only)."""
    for i, value in enumerate(column):
        if is_bad(value):
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:50] + "..." + shown[-7:]
            return WireError(f"{name}[{i}]: {rule}, got {shown}")
    return WireError(f"{name}: {rule}")  # not reached when the caller's check is right


def _not_utf8(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_utf8(name, column, rule):
    """All strings of ``column`` (Nones and ""s dropped) are encodable as UTF-8 (JSON
    ``\\ud800`` escapes make lone surrogates, which SQLite cannot store)."""
    joined = "\x00".join(filter(None, column))
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(name, column, lambda v: v is not None and _not_utf8(v), rule) from None


_columns = itemgetter(*COLUMNS)


def _shape_error(columns):
    for name, column in zip(COLUMNS, columns):
        if type(column) is not list:
            return WireError(f"{name}: must be an array")
    n = len(columns[0])
    for name, column in zip(COLUMNS, columns):
        if len(column) != n:
            return WireError(f"{name}: has {len(column)} values, key has {n}; "
                             "every column must have one value per message")
    return WireError("columns: bad shape")  # not reached


def _text_column(name, column, rule, non_empty):
    try:
        joined = "\x00".join(column)  # also the type check: only strs join
    except TypeError:
        raise _bad(name, column, lambda v: type(v) is not str, rule) from None
    if non_empty and not all(column):
        i = column.index("")
        raise WireError(f"{name}[{i}]: {rule}, got ''")
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(name, column, _not_utf8, rule) from None


def decode_batch(body):
    """A request body as a list of row tuples (``ROW`` order) for ``executemany``.

    Raises WireError naming the first bad column (and index) instead.
    """
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(f"body: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        document = JSON_DECODER.decode(text)
    except RecursionError:
        raise WireError("body: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise WireError(f"body: invalid JSON: {e}") from None
    except WireError:
        raise  # NaN/Infinity, from _no_constant
    except ValueError as e:
        # An integer literal of more than 4300 digits (Python's int conversion limit):
        # malformed for this format, so a 400, not an exception escaping as a 500
        # (which tells the client to retry the same body forever).
        raise WireError(f"body: invalid JSON: {str(e).split(';')[0]}") from None
    if type(document) is not dict:
        raise WireError("body: must be a JSON object with one array per column")
    keys = document.keys()
    if keys != FIELD_SET and keys != FIELD_SET_ACCOUNTS:
        raise WireError(f"body: {describe_keys(document)}")

    columns = _columns(document)
    key, client_id, username, topic, qos, retain, received_at, payload_len = columns
    n = len(key) if type(key) is list else -1
    for column in columns:
        if type(column) is not list or len(column) != n:
            raise _shape_error(columns)

    _text_column("key", key, "must be a non-empty string", non_empty=True)
    _text_column("client_id", client_id, "must be a string", non_empty=False)
    _text_column("topic", topic, "must be a non-empty string", non_empty=True)
    rule = "must be a string or null"
    if not set(map(type, username)) <= _STR_OR_NONE:
        raise _bad("username", username, lambda v: v is not None and type(v) is not str, rule)
    _check_utf8("username", username, rule)

    rule = "must be 0, 1 or 2"
    if not set(map(type, qos)) <= _INT or not set(qos) <= _QOS:
        raise _bad("qos", qos, lambda v: type(v) is not int or v not in _QOS, rule)
    if not set(map(type, retain)) <= _BOOL:
        raise _bad("retain", retain, lambda v: type(v) is not bool, "must be true or false")
    received_at = _received_at(received_at)

    rule = "must be a byte count (an integer >= 0)"
    if not set(map(type, payload_len)) <= _INT or (n and min(payload_len) < 0):
        raise _bad("payload_len", payload_len, lambda v: type(v) is not int or v < 0, rule)
    payload = document["payload"]
    if type(payload) is not str:
        raise WireError(f"payload: must be a base64 string, got {type(payload).__name__}")
    try:
        # strict: only the alphabet, correct padding, nothing after it (RFC 4648).
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise WireError(f"payload: invalid base64 ({e})") from None
    total = sum(payload_len)
    if total != len(data):
        raise WireError(f"payload_len: sums to {total}, but payload decodes to {len(data)} bytes")
    accounts = _accounts(document.get(ACCOUNT), n)
    # Every length is an int >= 0 and they sum to len(data): the reads split it exactly.
    payloads = map(BytesIO(data).read, payload_len)
    return list(zip(key, client_id, username, topic, payloads, qos, retain, received_at,
                    accounts))


def _accounts(column, n):
    """The account column (None: the body has none, every account is NULL): names by
    ``mqttd.namespace.ACCOUNT_NAME``, or null."""
    if column is None:
        return repeat(None, n)
    if type(column) is not list or len(column) != n:
        raise WireError(f"account: must be an array of {n} values (one per message)")
    names = [name for name in column if name is not None]
    if not set(map(type, names)) <= _STR or not all(map(valid_account, set(names))):
        raise _bad("account", column, lambda v: v is not None and not valid_account(v),
                   "must be an account name or null")
    return column


def _not_a_double(value):
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _received_at(column):
    """The column as finite floats >= 0 (JSON integers become floats, as SQLite's REAL)."""
    rule = "must be unix seconds (a finite number >= 0)"
    types = set(map(type, column))
    if not types <= _NUMBER:
        raise _bad("received_at", column, lambda v: type(v) not in _NUMBER, rule)
    if int in types:
        try:
            column = list(map(float, column))
        except OverflowError:  # an integer too big for a double
            raise _bad("received_at", column, _not_a_double, rule) from None
    # 1e999 parses as inf; NaN/Infinity literals are already refused by json.loads.
    if not all(map(math.isfinite, column)) or (column and min(column) < 0):
        raise _bad("received_at", column, lambda v: not (0 <= v < math.inf), rule)
    return column
