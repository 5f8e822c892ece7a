"""The names of the batch wire format that both of its sides share (``mqttd.ingest.wire``
says the format): the keys of a body, its error, and the strict JSON decoder."""
import json

__all__ = ["ACCOUNT", "COLUMNS", "FIELDS", "FIELD_SET", "FIELD_SET_ACCOUNTS", "JSON_DECODER",
           "WireError", "describe_keys"]

COLUMNS = ("key", "client_id", "username", "topic", "qos", "retain", "received_at",
           "payload_len")
"""The array keys of a body; ``payload`` (one base64 string) is the ninth key."""
FIELDS = COLUMNS + ("payload",)
FIELD_SET = frozenset(FIELDS)
ACCOUNT = "account"
"""The optional tenth key: one account (or null) per message."""
FIELD_SET_ACCOUNTS = FIELD_SET | {ACCOUNT}


class WireError(ValueError):
    """A malformed batch; the message says where (``qos[3]: ...``)."""


def _no_constant(name):
    raise WireError(f"body: {name} is not a number JSON allows")


JSON_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # json.loads builds one per call


def describe_keys(document, fields=FIELDS, optional=(ACCOUNT,)):
    missing = [f for f in fields if f not in document]
    unknown = sorted(k for k in document if k not in fields and k not in optional)
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown {', '.join(unknown)}")
    return "; ".join(parts)
