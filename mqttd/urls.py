"""The webhook's URL as the URI the broker sends: checked at start, encoded once.

Config validation and the webhook client both use ``webhook_uri``, so a URL that passes
the config check is exactly one the client can send. It sits at the bottom of the import
graph, beside ``mqttd.errors``, so the config loader needs no tier to check a URL.
"""
import ipaddress
from urllib.parse import unquote, urlsplit

import attrs
from hyperlink import EncodedURL


def webhook_uri(text):
    """``text`` (a URL or IRI) as a hyperlink URL in URI form; ValueError if it has none.

    hyperlink's ``to_uri()`` runs the host through IDNA, which refuses an IPv6 literal
    (``http://[::1]:8080/``) although HTTP clients take it as is; an IP host is kept
    and the rest encoded.
    """
    url = EncodedURL.from_text(text)
    try:
        ipaddress.ip_address(url.host)
    except ValueError:
        return url.to_uri()
    return url.replace(host="").to_uri().replace(host=url.host)


@attrs.frozen
class RedisAddress:
    """Where ``cluster.redis_url`` points: host, port, database, and the credentials
    (``password`` left out of the repr, so a logged address never shows it)."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def redis_address(text):
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` as a RedisAddress; ValueError
    saying what is wrong (never echoing a password). Config validation and the cluster's
    connection both use it, so an accepted URL is one the connection can use."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a redis:// URL ({e})") from None
    if parts.scheme != "redis":
        raise ValueError("must start with redis:// (rediss:// and unix sockets are not "
                         "supported)")
    if not parts.hostname:
        raise ValueError("has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("port must be 1..65535")
    if parts.query or parts.fragment:
        raise ValueError("takes no ?query or #fragment")
    path = parts.path.lstrip("/")
    if path and not (path.isascii() and path.isdigit() and len(path) <= 5):
        raise ValueError(f"the database after the host must be a number, got {path!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password == "":
        password = None
    return RedisAddress(parts.hostname, port or 6379, int(path) if path else 0, username,
                        password)
