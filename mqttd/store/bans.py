"""The ``bans`` table: client ids, usernames and IP addresses or networks kept out.

Written by the operator (``mqttd bans add|rm``) and by the gate's flapping detector
(through ``GateStore.add_ban``); read whole by the gate, which enforces them in memory
and lets each lapse at its ``until``. One row per (kind, value): banning again replaces
the row (a longer ban, a new reason). Expired rows stay until removed, so ``bans list
--all`` shows what happened.

An IP ban's value is checked as the config's ``limits.banned`` entries are (an address,
or a network with no bits past its prefix: ``10.1.2.3/8`` is a typo) and stored in its
canonical spelling, so ``2001:DB8::1`` and ``2001:db8::1`` are one ban, removed by either.
Every change raises ``ban_version`` (schema step 5), which a running gate polls.
"""
import ipaddress
import sqlite3
from urllib.parse import quote

from mqttd.store.accounts import AccountsError
from mqttd.store.gate_records import BAN_KINDS, BanRecord

__all__ = ["active_bans", "add_ban", "ban_version", "canonical_ban_value", "list_bans",
           "remove_ban"]


def canonical_ban_value(kind, value):
    """``value`` as stored for a ban of ``kind``; AccountsError if it is not one."""
    if kind not in BAN_KINDS:
        raise AccountsError(f"bad ban kind {kind!r}: must be one of {', '.join(BAN_KINDS)}")
    if not isinstance(value, str) or not value:
        raise AccountsError(f"a {kind} ban needs a non-empty value, got {value!r}")
    if kind != "ip":
        return value
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise AccountsError(f"ip ban: not an IP address or network: {value!r}") from None
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise AccountsError(f"ip ban: {value!r} has bits set past its prefix "
                            f"(the network is {network})") from None
    return str(network) if "/" in value else str(network.network_address)


def _check(record):
    if not isinstance(record, BanRecord):
        raise AccountsError(f"not a BanRecord: {record!r}")
    value = canonical_ban_value(record.kind, record.value)
    for name in ("who", "reason"):
        if not isinstance(getattr(record, name), str):
            raise AccountsError(f"ban {name}: must be text, got {getattr(record, name)!r}")
    if record.until is not None and not record.until > record.at:
        raise AccountsError(f"ban until ({record.until}) must be after at ({record.at})")
    return value


def add_ban(conn, record):
    """Store ``record`` (a BanRecord), replacing any ban of the same kind and value;
    the record as stored (its value canonical)."""
    value = _check(record)
    conn.execute(
        "INSERT INTO bans (kind, value, who, reason, at, until) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, value) DO UPDATE SET who = excluded.who, "
        "reason = excluded.reason, at = excluded.at, until = excluded.until",
        (record.kind, value, record.who, record.reason, record.at, record.until))
    return BanRecord(record.kind, value, record.who, record.reason, record.at, record.until)


def remove_ban(conn, kind, value):
    """Remove the ban of ``kind`` and ``value``: True, or False if there was none.
    AccountsError for a value no ban of ``kind`` can have."""
    value = canonical_ban_value(kind, value)
    return conn.execute("DELETE FROM bans WHERE kind = ? AND value = ?",
                        (kind, value)).rowcount > 0


_SELECT = "SELECT kind, value, who, reason, at, until FROM bans"


def list_bans(conn, now=None):
    """Every ban as a BanRecord, by kind and value; with ``now`` (unix seconds), only
    those still in force then (``BanRecord.active``: a ban lifts AT its until)."""
    if now is None:
        rows = conn.execute(f"{_SELECT} ORDER BY kind, value")
    else:
        rows = conn.execute(f"{_SELECT} WHERE until IS NULL OR until > ? ORDER BY kind, value",
                            (now,))
    return [BanRecord(*row) for row in rows.fetchall()]


def active_bans(conn, now):
    """The bans in force at ``now``."""
    return list_bans(conn, now)


def bans_in_file(path, now):
    """The bans in force at ``now`` in the database at ``path``, read at once: for a
    process that is starting (its reactor not running yet), so the door refuses a
    banned address from its first accept, before the gate's first poll."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=5)
    try:
        return active_bans(conn, now)
    finally:
        conn.close()


def ban_version(conn):
    """The counter every change to bans raises (schema step 5): apart from accounts'
    and tokens' ``gate_version``, so a ban does not make the gate forget its tokens."""
    return conn.execute("SELECT version FROM ban_version").fetchone()[0]
