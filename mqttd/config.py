"""TOML configuration into frozen, validated attrs sections.

Every key has a default here, so an empty file (or none) is a working embedded appliance.
Anything wrong stops start-up with one line naming the key path, e.g.
``broker.max_inflight: must be 1..65535, got 0``: an operator should never have to
guess which of their edits broke the service. Key names follow what operators already
know from EMQX and Mosquitto.
"""
import ipaddress
import tomllib

import attrs

from mqttd.errors import ConfigError
from mqttd.urls import webhook_uri


def _setting(default, kind, low=None, high=None, doc="", choices=None, secret=False):
    """An attrs field carrying its type and bounds (or allowed values) for the loader to check.

    ``kind`` ``dict`` is a TOML table of strings, kept as a tuple of (name, value) pairs.
    A ``secret`` is left out of the section's repr, so logging a config never shows it.
    """
    return attrs.field(
        default=default,
        repr=not secret,
        metadata={"kind": kind, "low": low, "high": high, "doc": doc, "choices": choices},
    )


@attrs.frozen
class User:
    """A static username/password pair (until accounts arrive with the edge)."""

    username: str = _setting("", str)
    password: str = _setting("", str, secret=True)


@attrs.frozen
class ServerConfig:
    listen: tuple = _setting(("tcp:1883:interface=127.0.0.1",), (str,))
    data_dir: str = _setting("./var", str)
    # Broker worker processes under one master (mqttd.tree); 0 runs everything in this
    # one process, as small hosts and most tests want.
    workers: int = _setting(0, int, 0, 256)
    # Bytes of publishes forwarded between workers one channel may hold past its 64 KiB
    # while its reader is slow (the master's to each worker, each worker's to the master):
    # past half, forwarded QoS 0 is dropped; past all of it, QoS 1 and 2 too (counted;
    # the messages are stored, a subscriber on another worker misses them).
    max_forward_bytes: int = _setting(8_388_608, int, 65_536, 1 << 40)


@attrs.frozen
class BrokerConfig:
    max_connections: int = _setting(1_000_000, int, 1, 100_000_000)
    # A QoS 1/2 PUBLISH of exactly 1 MiB with the longest topic MQTT allows: 4 bytes of
    # fixed header, 2 + 65,535 of topic, 2 of packet id, 1,048,576 of payload. The
    # limit counts the whole packet, so 1,048,576 refused a 1 MiB payload.
    max_packet_size: int = _setting(1_114_119, int, 64, 268_435_460)
    max_inflight: int = _setting(32, int, 1, 65535)
    max_queued_messages: int = _setting(1000, int, 0, 100_000_000)
    max_queued_bytes: int = _setting(16_777_216, int, 1024, 1 << 40)
    # EMQX's session expiry interval (2 h); the longest is ten years.
    session_expiry: float = _setting(7200.0, float, 0.001, 315_360_000.0)
    max_sessions: int = _setting(100_000, int, 1, 100_000_000)
    idle_timeout: float = _setting(15.0, float, 0.001, 86400.0)
    # A CONNECT with a 64 KiB will message and up to 64 KiB of client id, will topic and
    # credentials besides fits; it is the only packet read before authentication.
    max_connect_size: int = _setting(131_072, int, 64, 268_435_460)
    packet_timeout: float = _setting(30.0, float, 0.001, 86400.0)
    max_keepalive: int = _setting(65535, int, 1, 65535)
    max_partial_bytes: int = _setting(268_435_456, int, 1024, 1 << 40)
    max_clientid_len: int = _setting(65535, int, 1, 65535)
    allow_zero_length_clientid: bool = _setting(True, bool)
    # Per-connection log lines (connect, refused, disconnect) per client IP address:
    # at most log_lines_per_ip per log_lines_window seconds, then one summary line.
    log_lines_per_ip: int = _setting(100, int, 1, 1_000_000)
    log_lines_window: float = _setting(60.0, float, 0.001, 86400.0)


@attrs.frozen
class LimitsConfig:
    """Per-address limits the door applies at accept, before a byte is read
    (``mqttd.edge.door``; the global cap is ``broker.max_connections``).

    Loopback is allowlisted by default: a proxy, bridge or load balancer on this host
    brings every client from one loopback address, and the default listener is on
    loopback only. Set ``allowlist = []`` to limit local clients as well.
    """

    # Generous by default: a customer's fleet behind one carrier-grade NAT shares one
    # address, and a cap that cut it off would be an outage of our own making. 1000
    # open at once still stops one address from taking the broker (1,000,000). 0: no cap.
    max_conn_per_ip: int = _setting(1000, int, 0, 100_000_000)
    # New connections a second from one address, a token bucket holding conn_rate_burst:
    # a device reconnecting in a loop gets 100 a second; a NATed fleet of 200 coming
    # back after an outage gets in at once, a bigger one within seconds. 0: off.
    max_conn_rate_per_ip: float = _setting(100.0, float, 0.0, 1_000_000.0)
    conn_rate_burst: int = _setting(200, int, 1, 1_000_000)
    allowlist: tuple = _setting(("127.0.0.0/8", "::1"), (str,))
    banned: tuple = _setting((), (str,))


@attrs.frozen
class AuthConfig:
    allow_anonymous: bool = _setting(False, bool)
    users: tuple = _setting((), (User,))


@attrs.frozen
class IngestConfig:
    """The built-in durable ingest tier: the internal webhook and its group-commit writer.

    ``listen`` defaults to an ephemeral port on loopback: the webhook writes straight
    into the database, so it faces the network only when asked to; the broker learns
    the bound port in-process (webhook.url = ""); another address stops start-up unless
    ``allow_remote``. Every request must carry ``secret``
    (``Authorization: Bearer``); empty, one is made at every start and shared with the
    broker's own client in-process.
    """

    enabled: bool = _setting(True, bool)
    listen: str = _setting("tcp:0:interface=127.0.0.1", str)
    allow_remote: bool = _setting(False, bool)
    secret: str = _setting("", str, secret=True)
    batch_size: int = _setting(1000, int, 1, 1_000_000)
    flush_interval: float = _setting(0.0, float, 0.0, 60_000.0)  # milliseconds
    max_queue: int = _setting(50_000, int, 1, 100_000_000)
    max_queue_bytes: int = _setting(268_435_456, int, 1024, 1 << 40)
    # At most SQLite's own limit on a value and on a row (SQLITE_MAX_LENGTH): a row never
    # takes more bytes in the database than in its request, so no body that fits can
    # carry a row SQLite refuses, which would fail the commit it shares with others.
    max_body_size: int = _setting(16_777_216, int, 1024, 1_000_000_000)
    # A stalled upload must not pin memory: a request is in whole within request_timeout
    # seconds or its connection is closed, and the bodies being received at once hold at
    # most max_receiving_bytes (a body received alone may still reach max_body_size).
    request_timeout: float = _setting(5.0, float, 0.1, 3600.0)
    max_receiving_bytes: int = _setting(67_108_864, int, 1024, 1 << 40)
    synchronous: str = _setting("FULL", str, choices=("FULL", "NORMAL", "OFF"))


@attrs.frozen
class WebhookConfig:
    """How broker workers reach the ingest webhook (treq over its own connection pool).

    An empty ``url`` means the appliance's built-in ingest tier. ``ack_timeout`` is the
    longest a message may wait for its commit: then its client is disconnected without
    an acknowledgement (so the device retransmits) and the message is counted rejected.
    """

    url: str = _setting("", str)
    # For ``url`` only (the built-in tier's secret is shared in-process): sent as
    # ``Authorization: Bearer``, and extra headers as they are.
    secret: str = _setting("", str, secret=True)
    headers: tuple = _setting((), dict, secret=True)
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
    # Payload + topic bytes awaiting commit; like max_pending, a soft limit: past either
    # one publishers are paused, and messages are refused only past 125 % of it.
    max_pending_bytes: int = _setting(268_435_456, int, 1024, 1 << 40)
    # Largest request body the client sends; when not set, ingest.max_body_size
    # (resolved by parse_config, so this always holds the number in use).
    max_body_size: int = _setting(16_777_216, int, 1024, 1_000_000_000)


@attrs.frozen
class Config:
    server: ServerConfig = attrs.field(factory=ServerConfig)
    broker: BrokerConfig = attrs.field(factory=BrokerConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
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
        if kind is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: must be a table of strings, got {value!r}")
            value = tuple((name, _check_scalar(f"{where}.{name}", item, str, None, None))
                          for name, item in value.items())
        elif isinstance(kind, tuple):
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
        if not user.password:
            # A CONNECT with that username and an empty (or no) password field would
            # get in: an empty password is no password.
            raise ConfigError(f"auth.users[{i}].password: must not be empty "
                              f"(user {user.username!r})")
    _check_credentials(config)
    _check_networks(config.limits)
    if config.broker.max_partial_bytes < config.broker.max_packet_size:
        # One packet of the largest size must always be readable.
        raise ConfigError(
            f"broker.max_partial_bytes: must be at least broker.max_packet_size "
            f"({config.broker.max_packet_size}), got {config.broker.max_partial_bytes}")
    if not config.webhook.url and not config.ingest.enabled:
        raise ConfigError(
            "webhook.url: must be set when ingest.enabled is false (nothing else stores messages)")
    if config.webhook.url:
        _check_webhook_url(config.webhook.url)
    _check_body_sizes(config)
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


def _check_networks(limits):
    """Every allowlist and ban entry is an IP address or a network in CIDR notation
    with no bits set past its prefix (10.1.2.3/8 is a typo for 10.0.0.0/8 or a /32)."""
    for key in ("allowlist", "banned"):
        for index, entry in enumerate(getattr(limits, key)):
            where = f"limits.{key}[{index}]"
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"{where}: not an IP address or network: {entry!r}") from None
            try:
                ipaddress.ip_network(entry)
            except ValueError:
                network = ipaddress.ip_network(entry, strict=False)
                raise ConfigError(f"{where}: {entry!r} has bits set past its prefix "
                                  f"(the network is {network})") from None


_VISIBLE = frozenset(map(chr, range(0x21, 0x7F)))  # visible ASCII: no space, no control
_HEADER_VALUE = _VISIBLE | {" ", "\t"}
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # an HTTP header name (RFC 9110 token)
_CLIENT_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                             "connection"})  # set by the webhook client itself
MIN_INGEST_SECRET = 16


def _check_credentials(config):
    """Secrets go into an HTTP header: visible ASCII only (a CR/LF would inject headers).
    Errors never echo a secret or a header value."""
    ingest, webhook = config.ingest, config.webhook
    if ingest.secret and (len(ingest.secret) < MIN_INGEST_SECRET
                          or not set(ingest.secret) <= _VISIBLE):
        raise ConfigError(f"ingest.secret: must be at least {MIN_INGEST_SECRET} visible ASCII "
                          f"characters (no spaces), or empty to make one at every start")
    if ingest.enabled and ingest.allow_remote and not ingest.secret:
        raise ConfigError("ingest.allow_remote: needs ingest.secret (the brokers posting "
                          "from elsewhere must know it; one made at start is known to nobody)")
    if webhook.secret and not set(webhook.secret) <= _VISIBLE:
        raise ConfigError("webhook.secret: must be visible ASCII characters (no spaces)")
    if (webhook.secret or webhook.headers) and not webhook.url:
        key = "webhook.secret" if webhook.secret else "webhook.headers"
        raise ConfigError(f"{key}: only for webhook.url (the built-in ingest tier's secret is "
                          f"ingest.secret, shared with the broker in-process)")
    for name, value in webhook.headers:
        if not name or not set(name) <= _TOKEN:
            raise ConfigError(f"webhook.headers: {name!r} is not a valid HTTP header name")
        where = f"webhook.headers.{name}"
        if name.lower() in _CLIENT_HEADERS:
            raise ConfigError(f"{where}: set by the webhook client itself")
        if name.lower() == "authorization" and webhook.secret:
            raise ConfigError(f"{where}: webhook.secret already sends Authorization")
        if not value or value != value.strip(" \t") or not set(value) <= _HEADER_VALUE:
            raise ConfigError(f"{where}: the value must be visible ASCII (spaces and tabs "
                              f"only inside it)")


# What one message may take in a request body beyond its payload and its texts, at most
# (the key's 12 bytes a character are in the texts): the other columns and the body's
# frame are about 200 bytes, so 1 KiB leaves room for a longer key.
_BODY_ROOM = 1024
_MQTT_STRING = 65535  # the longest UTF-8 string MQTT can carry (a topic, a username)
_GENERATED_CLIENT_ID = 64  # room for the client ids the broker makes (mqttd-BOOTID-N)


def one_message_body(broker):
    """The longest request body one message of ``broker`` can need, as the webhook
    client bounds it (``mqttd.ingest.wire.size_bound``): the whole packet as base64
    payload (4 bytes per 3), plus 12 bytes a character (the JSON escapes of a character
    outside the BMP) of the longest topic, username and client id, plus ``_BODY_ROOM``.
    The client cuts batches at its body budget by that bound; a budget below it could
    leave a message that fits no batch, refused again at every retransmission."""
    packet = broker.max_packet_size
    chars = (2 * min(packet, _MQTT_STRING)
             + min(packet, max(broker.max_clientid_len, _GENERATED_CLIENT_ID)))
    return (packet + 2) // 3 * 4 + 12 * chars + _BODY_ROOM


def _check_body_sizes(config):
    """The client's body budget (webhook.max_body_size) holds any one message, and
    the built-in tier accepts every body the client sends."""
    need = one_message_body(config.broker)
    why = (f"one message of broker.max_packet_size as the webhook's JSON: 4/3 of it as "
           f"base64, 12 bytes a character of topic, username and client id, and "
           f"{_BODY_ROOM} more")
    built_in = config.ingest.enabled and not config.webhook.url
    if built_in and config.ingest.max_body_size < need:
        raise ConfigError(f"ingest.max_body_size: must be at least {need} ({why}), "
                          f"got {config.ingest.max_body_size}")
    if config.webhook.max_body_size < need:
        raise ConfigError(f"webhook.max_body_size: must be at least {need} ({why}), "
                          f"got {config.webhook.max_body_size}")
    if built_in and config.webhook.max_body_size > config.ingest.max_body_size:
        raise ConfigError(
            f"webhook.max_body_size: must be at most ingest.max_body_size "
            f"({config.ingest.max_body_size}) for the built-in tier (bigger bodies get "
            f"413), got {config.webhook.max_body_size}")


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
        # the host name; credentials have their own keys.
        raise ConfigError("webhook.url: must not carry credentials (user:password@host); "
                          "put them in webhook.secret or webhook.headers")
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
    webhook = sections.get("webhook")
    if not (isinstance(webhook, dict) and "max_body_size" in webhook):
        config = attrs.evolve(config, webhook=attrs.evolve(
            config.webhook, max_body_size=config.ingest.max_body_size))
    _check_cross(config)
    return config


def config_document(config):
    """The TOML-shaped document that ``parse_config`` turns back into ``config``.

    How the master hands a child its exact configuration (as JSON on the child's stdin):
    the child validates it again, and never rereads a file that may have changed since.
    Secrets are in it; it goes only down a pipe to the appliance's own children.
    """
    document = {}
    for section in attrs.fields(Config):
        values = getattr(config, section.name)
        table = {}
        for field in attrs.fields(type(values)):
            value = getattr(values, field.name)
            kind = field.metadata["kind"]
            if kind is dict:
                value = dict(value)
            elif isinstance(kind, tuple):
                value = [attrs.asdict(item) if attrs.has(type(item)) else item for item in value]
            table[field.name] = value
        document[section.name] = table
    return document


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
