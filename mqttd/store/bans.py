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

A username ban of a device token holds the token's hash (``token_hash``), never the
token, which is a secret: ``stored_ban_value`` makes it so for the operator's bans (the
CLI and the manhole) as the flapping detector does for its own, by the gate's rule: a
username that is not an ``auth.users`` name is a token. A value that is a hash already
(64 lowercase hex digits, as ``bans list`` shows a token's ban) is kept as it is, so a
listed ban can be given again; ``mqttd tokens add`` makes 32-character tokens, which a
hash is not. The gate matches a username by itself and by its hash (``BanList``).
"""
import ipaddress
import re
import sqlite3
from urllib.parse import quote

from mqttd.store.accounts import AccountsError
from mqttd.store.gate_records import BAN_KINDS, BanRecord, token_hash

__all__ = ["active_bans", "add_ban", "ban_version", "canonical_ban_value", "is_token_hash",
           "list_bans", "remove_ban", "stored_ban_value", "token_prefixes"]

_TOKEN_HASH = re.compile(r"[0-9a-f]{64}")


def canonical_ban_value(kind, value):
    """``value`` as stored for a ban of ``kind``; AccountsError if it is not one."""
    if kind not in BAN_KINDS:
        raise AccountsError(f"bad ban kind {kind!r}: must be one of {', '.join(BAN_KINDS)}")
    if not isinstance(value, str) or not value:
        raise AccountsError(f"a {kind} ban needs a non-empty value, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AccountsError(f"a {kind} ban's value must be UTF-8 text, got {value!r}") from None
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


def is_token_hash(value):
    """Whether ``value`` is spelled as a ``token_hash`` (64 lowercase hex digits)."""
    return _TOKEN_HASH.fullmatch(value) is not None


def stored_ban_value(kind, value, static_users):
    """``value`` as a ban of ``kind`` is stored and matched by: ``canonical_ban_value``'s,
    and for a username that is not one of ``static_users`` (the ``auth.users`` names) a
    device token's hash, unless it is a hash already. AccountsError if it is no value."""
    value = canonical_ban_value(kind, value)
    if kind != "username" or value in static_users or is_token_hash(value):
        return value
    return token_hash(value)


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
    A username ban of ``value`` or of its hash (a token's: given whole or by its hash).
    AccountsError for a value no ban of ``kind`` can have."""
    value = canonical_ban_value(kind, value)
    values = (value, token_hash(value)) if kind == "username" else (value, value)
    return conn.execute("DELETE FROM bans WHERE kind = ? AND value IN (?, ?)",
                        (kind, *values)).rowcount > 0


def token_prefixes(conn, records):
    """{value: token prefix} of the username bans in ``records`` that hold the hash of a
    token in the tokens table: what a listing shows beside the hash."""
    hashes = sorted({r.value for r in records
                     if r.kind == "username" and is_token_hash(r.value)})
    found = {}
    for start in range(0, len(hashes), 500):  # under SQLite's limit of bound values
        chunk = hashes[start:start + 500]
        found.update(conn.execute(
            "SELECT token_hash, prefix FROM tokens WHERE token_hash IN "
            f"({', '.join('?' * len(chunk))})", chunk).fetchall())
    return found


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
