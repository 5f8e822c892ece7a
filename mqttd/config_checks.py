"""The configuration rules that involve more than one key, or more than a type and bounds.

``check_cross(config)`` runs after every section was built; each rule raises a
ConfigError naming the key an operator has to change.
"""
import ipaddress

from mqttd.config_auth import check_auth
from mqttd.config_cluster import check_cluster
from mqttd.errors import ConfigError
from mqttd.listeners import endpoint_fields
from mqttd.urls import webhook_uri

__all__ = ["MIN_INGEST_SECRET", "MIN_MANHOLE_IDLE", "check_cross", "check_manhole_listen",
           "one_message_body"]

MIN_MANHOLE_IDLE = 10.0
"""The shortest ``manage.manhole_idle_timeout`` but 0 (no limit), in seconds."""


def check_cross(config):
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
    check_auth(config.auth)
    check_cluster(config.cluster)
    _check_networks(config.limits)
    check_manhole_listen(config.manage.manhole_listen)
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
    manage = config.manage
    if manage.trace_file and manage.trace_window_client_bytes > manage.trace_window_bytes \
            and manage.trace_window_clients:
        raise ConfigError(
            f"manage.trace_window_client_bytes: must be at most manage.trace_window_bytes "
            f"({manage.trace_window_bytes}), got {manage.trace_window_client_bytes}")
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
    if 0 < config.manage.canary_interval < 1.0:
        # Each canary check has one interval to get its PUBACK and find its row.
        raise ConfigError(f"manage.canary_interval: must be 0 (off) or at least 1 s, got "
                          f"{config.manage.canary_interval:g}")
    if 0 < config.manage.manhole_idle_timeout < MIN_MANHOLE_IDLE:
        # Shorter, a session would close while its user reads an answer.
        raise ConfigError(f"manage.manhole_idle_timeout: must be 0 (no limit) or at least "
                          f"{MIN_MANHOLE_IDLE:g} s, got {config.manage.manhole_idle_timeout:g}")
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



_MANHOLE = "manage.manhole_listen"


def check_manhole_listen(description):
    """The manhole runs any Python in the master: it listens on a loopback interface
    (``tcp:PORT:interface=127.0.0.1``, ``tcp6:PORT:interface=\\:\\:1``) or a unix socket
    (whose file's mode decides who may connect), never on the network. Checked here,
    from the string, so a wrong one stops start-up before anything binds ("" = off)."""
    if not description:
        return
    fields = endpoint_fields(description)
    kind = fields[0].lower()
    if kind == "unix":
        if len(fields) < 2 or not fields[1]:
            raise ConfigError(f"{_MANHOLE}: a unix: endpoint needs a path, got {description!r}")
        return
    if kind not in ("tcp", "tcp6"):
        raise ConfigError(f"{_MANHOLE}: must be tcp:PORT:interface=127.0.0.1 or unix:PATH "
                          f"(a telnet prompt that runs Python stays on this host), got "
                          f"{description!r}")
    positional = [field for field in fields[1:] if "=" not in field]
    options = dict(field.partition("=")[::2] for field in fields[1:] if "=" in field)
    interface = options.get("interface", positional[1] if len(positional) > 1 else "")
    why = ("the manhole runs any Python in the master: bind it to a loopback address "
           "(interface=127.0.0.1) or use unix:PATH")
    if not interface:
        raise ConfigError(f"{_MANHOLE}: {description!r} listens on every interface; {why}")
    try:
        loopback = ipaddress.ip_address(interface.split("%")[0]).is_loopback
    except ValueError:
        raise ConfigError(f"{_MANHOLE}: interface {interface!r} is not an IP address; "
                          f"{why}") from None
    if not loopback:
        raise ConfigError(f"{_MANHOLE}: {interface} is not a loopback address; {why}")
