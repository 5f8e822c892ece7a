"""The gate's records as they come out of SQLite, how a token is keyed, and how a log
line names a client's credentials (``who_of``).

Shared by the accounts store (``mqttd.store.accounts``), the operator's CLI and the
master's gate (``mqttd.edge.gate``), which depends only on these shapes: it is handed a
store with ``lookup_token``, ``bans``, ``add_ban``, ``remove_ban`` and ``versions``.
"""
import hashlib

import attrs

__all__ = ["BAN_KINDS", "BanRecord", "StoreVersions", "TokenRecord", "token_hash",
           "token_prefix", "who_of"]

BAN_KINDS = ("clientid", "username", "ip")
"""What a ban names: a client id, a username (a token is one), or an IP address or CIDR."""

PREFIX_LENGTH = 6


def token_hash(token):
    """The key a token is stored and looked up by: SHA-256 of its UTF-8, in hex.

    A token is a random secret of 128 bits or more, so an unsalted fast hash is enough
    (nothing to brute-force), and the database never holds a usable token. Looking a
    token up by its hash also makes the comparison constant-time in the token: the
    index compares hashes, whose prefixes an attacker cannot steer.
    """
    if isinstance(token, str):
        token = token.encode("utf-8")
    return hashlib.sha256(token).hexdigest()


def token_prefix(token):
    """The first characters of a token: enough for an operator to tell tokens apart in
    a log line or a listing, too few to use."""
    return token[:PREFIX_LENGTH]


def who_of(username, static_users):
    """What a log line may say of a client's credentials: "anonymous", "user NAME" for
    an ``auth.users`` name (``static_users``), else "token PREFIX": any other username
    is a device's token (Ubidots' convention, the gate's rule), a secret shown by its
    prefix only, never whole, however short or long it is."""
    if username is None:
        return "anonymous"
    if username in static_users:
        return f"user {username}"
    return f"token {token_prefix(username)}"


@attrs.frozen(slots=True)
class TokenRecord:
    """One token and the account it belongs to, as the gate judges a CONNECT by them.
    ``max_connections`` None: the account has no quota."""

    prefix: str
    account: str
    token_active: bool
    account_active: bool
    max_connections: int | None = None


@attrs.frozen(slots=True)
class BanRecord:
    """A ban of a client id, a username or an IP/CIDR (``kind`` in BAN_KINDS): by
    ``who`` (an operator, "flapping"), ``reason``, from ``at`` until ``until`` (unix
    seconds; None: until removed)."""

    kind: str
    value: str
    who: str
    reason: str
    at: float
    until: float | None = None

    def active(self, now):
        return self.until is None or now < self.until


@attrs.frozen(slots=True)
class StoreVersions:
    """The store's two change counters, read together: ``tokens`` (``gate_version``,
    moved by every change of accounts or tokens: the gate's cached tokens are stale)
    and ``bans`` (``ban_version``: the bans must be read again)."""

    tokens: int
    bans: int
