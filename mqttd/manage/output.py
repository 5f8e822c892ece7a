"""What a command answers, and the plain-text forms of it.

A command returns an ``Output``: one JSON document (``--json``, for scripts) and the
lines a person reads. Both are built from the same records, so they never disagree.
Times are unix seconds in JSON and UTC ISO 8601 in text.
"""
import math
from argparse import ArgumentTypeError
from datetime import datetime, timezone

import attrs

__all__ = ["Output", "count", "count_or_none", "seconds", "table", "when"]


@attrs.frozen(slots=True)
class Output:
    document: object
    lines: tuple = ()


def when(stamp):
    """A unix time as UTC ISO 8601 to the second; "-" for None (never)."""
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(value):
    """A cell of a table: "-" for None, yes/no for a flag."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers, rows):
    """Left-aligned columns under ``headers``; one line per row, a header line first."""
    cells = [list(headers)] + [[shown(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return tuple("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                  for line in cells)


# -- argument types (argparse's ``type=``): a bad value is a usage error -------------------

def count(text):
    """A non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def count_or_none(text):
    """A non-negative integer, or "none" (no limit)."""
    if text.lower() == "none":
        return None
    try:
        return count(text)
    except ArgumentTypeError:
        raise ArgumentTypeError(f"must be an integer >= 0 or none, got {text!r}") from None


def seconds(text):
    """A duration in seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value
