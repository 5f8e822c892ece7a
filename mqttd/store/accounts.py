"""The ``accounts`` table (schema step 4): synchronous SQL on a sqlite3 connection.

Used by the operator's CLI (``mqttd accounts ...``) and, through ``GateStore``, by the
master. The connection is in autocommit mode (``isolation_level=None``): a lone
statement is its own transaction, and anything that reads before it writes takes
``BEGIN IMMEDIATE`` first (``schema.immediate``), so two operators at once cannot
interleave. Every write changes ``gate_version`` (the schema's triggers), which is how a
running appliance notices.

An account's name becomes a topic level of its namespace (its mount point), so it may
hold no ``/``, ``+``, ``#``, ``$`` or space: the rule is ``NAME_RULE``.
"""
import time

import attrs

from mqttd.namespace import valid_account
from mqttd.store.schema import immediate

__all__ = ["KEEP", "NAME_RULE", "AccountRecord", "AccountsError", "add_account",
           "check_count", "check_name", "disable_account", "enable_account", "gate_version",
           "get_account", "list_accounts", "set_account", "wall_clock"]

NAME_RULE = "1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
MAX_COUNT = 2 ** 62  # SQLite's INTEGER is 64-bit signed; nothing real comes near


class AccountsError(ValueError):
    """An operator's request the gate's tables cannot take (a bad name or value, an
    unknown account or token): the message says which, in one line."""


class _Keep:
    def __repr__(self):
        return "KEEP"


KEEP = _Keep()
"""``set_account``'s default: leave this column as it is (None clears it)."""


def wall_clock():
    return time.time()


@attrs.frozen(slots=True)
class AccountRecord:
    """One row of ``accounts``. ``max_connections`` None: no quota."""

    name: str
    active: bool
    max_connections: int | None
    devices: int | None
    licence: str | None
    created: float
    updated: float

    def as_json(self):
        return attrs.asdict(self)


_COLUMNS = "name, active, max_connections, devices, licence, created, updated"


def _account(row):
    name, active, max_connections, devices, licence, created, updated = row
    return AccountRecord(name, bool(active), max_connections, devices, licence, created, updated)


def check_name(name):
    """``name`` if it is a valid account name, else AccountsError saying why."""
    if not valid_account(name):  # the one rule (mqttd.namespace.ACCOUNT_NAME)
        raise AccountsError(f"bad account name {name!r}: must be {NAME_RULE} "
                            f"(it becomes a topic level of the account's namespace)")
    return name


def check_count(what, value, allow_none=True):
    """A non-negative integer (or None, if allowed) for ``what``; AccountsError if not."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise AccountsError(f"{what}: must be an integer 0..{MAX_COUNT}, got {value!r}")
    return value


def _check_licence(licence):
    if licence is not None and not isinstance(licence, str):
        raise AccountsError(f"licence: must be text, got {licence!r}")
    return licence


def _fetch(conn, name):
    row = conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE name = ?", (name,)).fetchone()
    return None if row is None else _account(row)


def get_account(conn, name):
    """The AccountRecord named ``name``; AccountsError if there is none."""
    account = _fetch(conn, check_name(name))
    if account is None:
        raise AccountsError(f"no account named {name!r}")
    return account


def add_account(conn, name, *, max_connections=None, devices=None, licence=None,
                active=True, now=wall_clock):
    """Create account ``name``; its AccountRecord. AccountsError if it exists."""
    check_name(name)
    check_count("max_connections", max_connections)
    check_count("devices", devices)
    _check_licence(licence)
    stamp = now()
    with immediate(conn):
        if _fetch(conn, name) is not None:
            raise AccountsError(f"account {name!r} exists already")
        conn.execute(f"INSERT INTO accounts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (name, int(bool(active)), max_connections, devices, licence, stamp, stamp))
    return get_account(conn, name)


def list_accounts(conn):
    """Every account, by name."""
    return [_account(row) for row in
            conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY name").fetchall()]


def _update(conn, name, assignments, values, now):
    check_name(name)
    sets = ", ".join(f"{column} = ?" for column in (*assignments, "updated"))
    cursor = conn.execute(f"UPDATE accounts SET {sets} WHERE name = ?",
                          (*values, now(), name))
    if cursor.rowcount == 0:
        raise AccountsError(f"no account named {name!r}")
    return get_account(conn, name)


def set_account(conn, name, *, max_connections=KEEP, devices=KEEP, licence=KEEP,
                now=wall_clock):
    """Change the given columns of account ``name`` (None clears one, ``KEEP`` leaves
    it); the AccountRecord after. AccountsError if nothing is given to change."""
    changes = {}
    if max_connections is not KEEP:
        changes["max_connections"] = check_count("max_connections", max_connections)
    if devices is not KEEP:
        changes["devices"] = check_count("devices", devices)
    if licence is not KEEP:
        changes["licence"] = _check_licence(licence)
    if not changes:
        raise AccountsError("nothing to set: give max_connections, devices or licence")
    return _update(conn, name, tuple(changes), tuple(changes.values()), now)


def disable_account(conn, name, now=wall_clock):
    """Mark ``name`` inactive: the gate refuses its tokens and kicks its connections."""
    return _update(conn, name, ("active",), (0,), now)


def enable_account(conn, name, now=wall_clock):
    """Mark ``name`` active again."""
    return _update(conn, name, ("active",), (1,), now)


def gate_version(conn):
    """The counter every change to accounts or tokens raises (schema steps 4 and 5;
    bans have their own, ``mqttd.store.bans.ban_version``)."""
    return conn.execute("SELECT version FROM gate_version").fetchone()[0]
