"""TOML configuration into frozen, validated attrs sections.

Every key has a default here, so an empty file (or none) is a working embedded appliance.
Anything wrong stops start-up with one line naming the key path, e.g.
``broker.max_inflight: must be 1..65535, got 0``: an operator should never have to
guess which of their edits broke the service. Key names follow what operators already
know from EMQX and Mosquitto.
"""
import tomllib

import attrs

from mqttd.errors import ConfigError
from mqttd.urls import webhook_uri


def _setting(default, kind, low=None, high=None, doc="", choices=None):
    """An attrs field carrying its type and bounds (or allowed values) for the loader to check."""
    return attrs.field(
        default=default,
        metadata={"kind": kind, "low": low, "high": high, "doc": doc, "choices": choices},
    )


@attrs.frozen
class User:
    """A static username/password pair (until accounts arrive with the edge)."""

    username: str = _setting("", str)
    password: str = _setting("", str)


@attrs.frozen
class ServerConfig:
    listen: tuple = _setting(("tcp:1883:interface=127.0.0.1",), (str,))
    data_dir: str = _setting("./var", str)


@attrs.frozen
class BrokerConfig:
    max_connections: int = _setting(1_000_000, int, 1, 100_000_000)
    # A QoS 1/2 PUBLISH of exactly 1 MiB with the longest topic MQTT allows: 4 bytes of
    # fixed header, 2 + 65,535 of topic, 2 of packet id, 1,048,576 of payload. The
    # limit counts the whole packet, so 1,048,576 refused a 1 MiB payload.
    max_packet_size: int = _setting(1_114_119, int, 64, 268_435_460)
    max_inflight: int = _setting(32, int, 1, 65535)
    max_queued_messages: int = _setting(1000, int, 0, 100_000_000)
    idle_timeout: float = _setting(15.0, float, 0.001, 86400.0)
    max_clientid_len: int = _setting(65535, int, 1, 65535)
    allow_zero_length_clientid: bool = _setting(True, bool)
    # Per-connection log lines (connect, refused, disconnect) per client IP address:
    # at most log_lines_per_ip per log_lines_window seconds, then one summary line.
    log_lines_per_ip: int = _setting(10, int, 1, 1_000_000)
    log_lines_window: float = _setting(60.0, float, 0.001, 86400.0)


@attrs.frozen
class AuthConfig:
    allow_anonymous: bool = _setting(False, bool)
    users: tuple = _setting((), (User,))


@attrs.frozen
class IngestConfig:
    """The built-in durable ingest tier: the internal webhook and its group-commit writer.

    ``listen`` defaults to an ephemeral port on loopback: the webhook has no
    authentication and writes straight into the database, so it must never face the
    network; the broker learns the bound port in-process (webhook.url = "").
    """

    enabled: bool = _setting(True, bool)
    listen: str = _setting("tcp:0:interface=127.0.0.1", str)
    batch_size: int = _setting(1000, int, 1, 1_000_000)
    flush_interval: float = _setting(0.0, float, 0.0, 60_000.0)  # milliseconds
    max_queue: int = _setting(50_000, int, 1, 100_000_000)
    max_queue_bytes: int = _setting(268_435_456, int, 1024, 1 << 40)
    # At most SQLite's own limit on a value and on a row (SQLITE_MAX_LENGTH): a row never
    # takes more bytes in the database than in its request, so no body that fits can
    # carry a row SQLite refuses, which would fail the commit it shares with others.
    max_body_size: int = _setting(16_777_216, int, 1024, 1_000_000_000)
    synchronous: str = _setting("FULL", str, choices=("FULL", "NORMAL", "OFF"))


@attrs.frozen
class WebhookConfig:
    """How broker workers reach the ingest webhook (treq over its own connection pool).

    An empty ``url`` means the appliance's built-in ingest tier. ``ack_timeout`` is the
    longest a message may wait for its commit: then its client is disconnected without
    an acknowledgement (so the device retransmits) and the message is counted rejected.
    """

    url: str = _setting("", str)
    pool_size: int = _setting(1, int, 1, 1024)
    connect_timeout: float = _setting(2.0, float, 0.001, 600.0)
    request_timeout: float = _setting(5.0, float, 0.001, 600.0)
    batch_size: int = _setting(1000, int, 1, 1_000_000)
    batch_delay: float = _setting(0.0, float, 0.0, 10.0)
    linger: float = _setting(0.001, float, 0.0, 1.0)
    ack_timeout: float = _setting(15.0, float, 0.01, 3600.0)
    retry_initial: float = _setting(0.05, float, 0.001, 60.0)
    retry_max: float = _setting(2.0, float, 0.001, 600.0)
    max_pending: int = _setting(100_000, int, 1, 100_000_000)


@attrs.frozen
class Config:
    server: ServerConfig = attrs.field(factory=ServerConfig)
    broker: BrokerConfig = attrs.field(factory=BrokerConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    ingest: IngestConfig = attrs.field(factory=IngestConfig)
    webhook: WebhookConfig = attrs.field(factory=WebhookConfig)


_SECTIONS = {f.name: f.type for f in attrs.fields(Config)}


def _type_name(kind):
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, "a table"
    )


def _check_scalar(path, value, kind, low, high, choices=None):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{path}: must be {_type_name(kind)}, got {value!r}")
    if low is not None and not (low <= value <= high):
        raise ConfigError(f"{path}: must be {low}..{high}, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _build(cls, table, path):
    """Build section ``cls`` from a TOML table, checking every key against its field."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: must be a table, got {table!r}")
    fields = {f.name: f for f in attrs.fields(cls)}
    values = {}
    for key, value in table.items():
        where = f"{path}.{key}"
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key (known: {known})")
        meta = field.metadata
        kind = meta["kind"]
        if isinstance(kind, tuple):
            (item_kind,) = kind
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}: must be a list, got {value!r}")
            if attrs.has(item_kind):
                value = tuple(
                    _build(item_kind, item, f"{where}[{i}]") for i, item in enumerate(value)
                )
            else:
                value = tuple(
                    _check_scalar(f"{where}[{i}]", item, item_kind, None, None)
                    for i, item in enumerate(value)
                )
        else:
            value = _check_scalar(where, value, kind, meta["low"], meta["high"], meta["choices"])
        values[key] = value
    return cls(**values)


def _check_cross(config):
    """Rules that involve more than one key."""
    if not config.server.listen:
        raise ConfigError("server.listen: at least one listener is required")
    for i, user in enumerate(config.auth.users):
        if not user.username:
            raise ConfigError(f"auth.users[{i}].username: must not be empty")
    if not config.webhook.url and not config.ingest.enabled:
        raise ConfigError(
            "webhook.url: must be set when ingest.enabled is false (nothing else stores messages)")
    if config.webhook.url:
        _check_webhook_url(config.webhook.url)
    if config.ingest.enabled and not config.webhook.url:
        # One message must always fit in one webhook request (base64 is 4/3 of the
        # payload, JSON escapes can grow a topic): otherwise it could never be stored.
        need = 2 * config.broker.max_packet_size + 4096
        if config.ingest.max_body_size < need:
            raise ConfigError(
                f"ingest.max_body_size: must be at least 2 x broker.max_packet_size + 4096 "
                f"= {need}, got {config.ingest.max_body_size}")
    if config.ingest.enabled and not config.webhook.url:
        # The broker's own requests wait for the commit: a flush timer at least as long
        # as their timeout would time out every request under light load (each retry
        # waiting for the timer again) until the ack timeout fails the message.
        wait = min(config.webhook.request_timeout, config.webhook.ack_timeout)
        if config.ingest.flush_interval / 1000.0 >= wait:
            raise ConfigError(
                f"ingest.flush_interval: must be shorter than webhook.request_timeout and "
                f"webhook.ack_timeout ({wait:g} s = {wait * 1000:g} ms), got "
                f"{config.ingest.flush_interval:g} ms")
    if config.webhook.batch_delay >= config.webhook.ack_timeout:
        # A batch that does not fill up would wait past its deadline, unsent.
        raise ConfigError(
            f"webhook.batch_delay: must be shorter than webhook.ack_timeout "
            f"({config.webhook.ack_timeout:g}), got {config.webhook.batch_delay:g}")
    if config.webhook.linger >= config.webhook.ack_timeout:
        # Messages held that long would be refused unsent (ack timeout) every time.
        raise ConfigError(
            f"webhook.linger: must be shorter than webhook.ack_timeout "
            f"({config.webhook.ack_timeout}), got {config.webhook.linger}")
    names = [u.username for u in config.auth.users]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"auth.users: duplicate username {name!r}")


def _check_webhook_url(url):
    """An http(s) URL with a host and a usable port: anything else would be accepted at
    start and then fail every batch, so every message would wait out its ack timeout."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"webhook.url: must be an http:// or https:// URL, got {url!r}")
    try:
        parsed = webhook_uri(url)  # what the webhook client will send
    except ValueError as e:  # hyperlink's URLParseError, IDNA errors
        raise ConfigError(f"webhook.url: not a valid URL ({e}), got {url!r}") from None
    if parsed.userinfo:
        # Not echoed: it may hold a password. The client would take "user:pw@host" for
        # the host name, and it sends no credentials anyway.
        raise ConfigError("webhook.url: must not carry credentials (user:password@host); "
                          "the webhook client sends none")
    if not parsed.host:
        raise ConfigError(f"webhook.url: has no host, got {url!r}")
    if not 1 <= parsed.port <= 65535:
        raise ConfigError(f"webhook.url: port must be 1..65535, got {url!r}")


def parse_config(document, overrides=None):
    """Build a Config from a parsed TOML document plus command-line overrides.

    ``overrides`` maps "section.key" to an already-typed value (from the command line)
    and wins over the file.
    """
    if not isinstance(document, dict):
        raise ConfigError(f"config: must be a table, got {document!r}")
    sections = {}
    for name, table in document.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            known = ", ".join(sorted(_SECTIONS))
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = table
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        table = sections.setdefault(section, {})
        if isinstance(table, dict):  # not a table: _build says so, with the section name
            sections[section] = dict(table, **{key: value})
    config = Config(**{name: _build(_SECTIONS[name], table, name) for name, table in sections.items()})
    _check_cross(config)
    return config


def load_config(path=None, overrides=None):
    """Read the TOML file at ``path`` (None: defaults only) and validate it."""
    document = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        except UnicodeDecodeError as e:  # TOML is UTF-8; a Latin-1 password, say
            raise ConfigError(f"{path}: not UTF-8 (byte {e.start}); TOML files are UTF-8") from None
    return parse_config(document, overrides)
