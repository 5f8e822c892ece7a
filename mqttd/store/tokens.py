"""The ``tokens`` table: an account's device tokens, stored only as hash and prefix.

A token is ``secrets.token_urlsafe(24)`` (192 random bits, 32 characters): the operator
sees it once, when it is made, and the database keeps its SHA-256 (``token_hash``) and
its first characters (``token_prefix``), enough to tell tokens apart in a listing and to
revoke one without the secret. A device presents the token as its MQTT username; the
gate looks it up by hash (``lookup_token``), which also makes the comparison
constant-time in the token.
"""
import secrets

import attrs

from mqttd.store.accounts import AccountsError, get_account, wall_clock
from mqttd.store.gate_records import PREFIX_LENGTH, TokenRecord, token_hash, token_prefix
from mqttd.store.schema import immediate

__all__ = ["TokenInfo", "add_token", "list_tokens", "lookup_token", "lookup_tokens",
           "new_token", "revoke_token"]

TOKEN_BYTES = 24
_LOOKUP_CHUNK = 500  # hashes per IN (...): far below SQLITE_MAX_VARIABLE_NUMBER


@attrs.frozen(slots=True)
class TokenInfo:
    """What a listing shows of a token: never the token itself."""

    prefix: str
    account: str
    active: bool
    created: float

    def as_json(self):
        return attrs.asdict(self)


def new_token():
    """A fresh token that does not start with "-": a shell command given one (``mqttd
    tokens revoke``, ``mosquitto_pub -u``) would read it as an option."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def add_token(conn, account, now=wall_clock):
    """A new token for ``account`` (AccountsError if there is none): the token itself,
    which is stored only as its hash and shown nowhere again."""
    token = new_token()
    with immediate(conn):
        get_account(conn, account)
        conn.execute("INSERT INTO tokens (token_hash, prefix, account, active, created) "
                     "VALUES (?, ?, ?, 1, ?)",
                     (token_hash(token), token_prefix(token), account, now()))
    return token


_INFO = "SELECT prefix, account, active, created FROM tokens"


def _info(row):
    prefix, account, active, created = row
    return TokenInfo(prefix, account, bool(active), created)


def list_tokens(conn, account=None):
    """Every token (or ``account``'s: AccountsError if there is no such account), as
    TokenInfo, oldest first."""
    if account is None:
        rows = conn.execute(f"{_INFO} ORDER BY created, prefix").fetchall()
    else:
        get_account(conn, account)
        rows = conn.execute(f"{_INFO} WHERE account = ? ORDER BY created, prefix",
                            (account,)).fetchall()
    return [_info(row) for row in rows]


def _matching(conn, token_or_prefix):
    """(token_hash, TokenInfo) of the tokens ``token_or_prefix`` names: the token whose
    hash it is, or, for a text no longer than a prefix, those whose prefix starts so."""
    if len(token_or_prefix) > PREFIX_LENGTH:
        rows = conn.execute("SELECT token_hash, prefix, account, active, created FROM tokens "
                            "WHERE token_hash = ?", (_hash_or_none(token_or_prefix),))
    else:
        # substr, not LIKE: "_" is a token character and a LIKE wildcard, and LIKE
        # ignores case.
        rows = conn.execute("SELECT token_hash, prefix, account, active, created FROM tokens "
                            "WHERE substr(prefix, 1, ?) = ? ORDER BY created",
                            (len(token_or_prefix), token_or_prefix))
    return [(row[0], _info(row[1:])) for row in rows.fetchall()]


def revoke_token(conn, token_or_prefix):
    """Revoke the token given whole, or by a prefix that names exactly one active
    token; its TokenInfo after. AccountsError for an unknown, ambiguous or already
    revoked one (the message lists what matched)."""
    if not isinstance(token_or_prefix, str) or not token_or_prefix:
        raise AccountsError("give a token, or the prefix tokens list shows")
    with immediate(conn):
        matches = _matching(conn, token_or_prefix)
        active = [(key, info) for key, info in matches if info.active]
        if not matches:
            raise AccountsError(f"no token matches {token_or_prefix!r}")
        if not active:
            raise AccountsError(f"token {matches[0][1].prefix} (account "
                                f"{matches[0][1].account}) is already revoked")
        if len(active) > 1:
            names = ", ".join(f"{info.prefix} ({info.account})" for _, info in active)
            raise AccountsError(f"prefix {token_or_prefix!r} matches {len(active)} active "
                                f"tokens: {names}; give the whole token")
        ((key, info),) = active
        conn.execute("UPDATE tokens SET active = 0 WHERE token_hash = ?", (key,))
    return attrs.evolve(info, active=False)


def _hash_or_none(token):
    try:
        return token_hash(token)
    except UnicodeEncodeError:  # a lone surrogate: no token has it
        return None


_LOOKUP = ("SELECT t.token_hash, t.prefix, t.account, t.active, a.active, a.max_connections "
           "FROM tokens t JOIN accounts a ON a.name = t.account WHERE t.token_hash IN ")


def _record(row):
    _, prefix, account, token_active, account_active, max_connections = row
    return TokenRecord(prefix, account, bool(token_active), bool(account_active),
                       max_connections)


def lookup_token(conn, token):
    """The TokenRecord of ``token`` (revoked or not, its account active or not), or
    None if no such token is stored."""
    return lookup_tokens(conn, [token])[token]


def lookup_tokens(conn, tokens):
    """{token: TokenRecord or None} for each of ``tokens``, in one query per 500."""
    keys = {}
    for token in tokens:
        key = _hash_or_none(token) if isinstance(token, (str, bytes)) else None
        if key is not None:
            keys[key] = token
    found = {}
    hashes = list(keys)
    for start in range(0, len(hashes), _LOOKUP_CHUNK):
        chunk = hashes[start:start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(f"{_LOOKUP}({marks})", chunk).fetchall():
            found[keys[row[0]]] = _record(row)
    return {token: found.get(token) for token in tokens}
