"""The configuration's sections: frozen attrs classes, one field per key, each with its
default and bounds (``_setting``), so an empty file is a working embedded appliance.

The loader (``mqttd.config``) reads the bounds from each field's metadata; the rules that
involve several keys are in ``mqttd.config_checks``. Kept apart because the sections grow
with every tier, and the loader does not.
"""
import socket

import attrs

from mqttd.cores import MAX_WORKERS, usable_cores

__all__ = ["AclRule", "AuthConfig", "BrokerConfig", "ClusterConfig", "Config",
           "FlappingDetectConfig",
           "IngestConfig", "LimitsConfig", "ManageConfig", "ServerConfig", "User",
           "WebhookConfig"]


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
    """A static username/password pair, optionally in an account (its topic namespace,
    ``mqttd.namespace``; "" for none)."""

    username: str = _setting("", str)
    password: str = _setting("", str, secret=True)
    account: str = _setting("", str)


@attrs.frozen
class AclRule:
    """One ``[[auth.acl]]`` rule (``mqttd.broker.acl``): for exactly one of a user, an
    account, anonymous clients or all; a topic filter in the client's own view (``%c``
    and ``%u`` substituted); publish, subscribe or all; allow or deny."""

    user: str = _setting("", str)
    account: str = _setting("", str)
    anonymous: bool = _setting(False, bool)
    all: bool = _setting(False, bool)
    topic: str = _setting("", str)
    action: str = _setting("all", str, choices=("publish", "subscribe", "all"))
    permission: str = _setting("", str, choices=("allow", "deny"))


@attrs.frozen
class ServerConfig:
    listen: tuple = _setting(("tcp:1883:interface=127.0.0.1",), (str,))
    data_dir: str = _setting("./var", str)
    # Broker worker processes under one master (mqttd.tree): by default one per core this
    # process may run on (mqttd.cores), so the appliance uses the host it is given; 0
    # runs everything in this one process, as tiny hosts and in-process tests want. No
    # "auto" spelling: leaving the key out is that, and a number is what children get.
    workers: int = _setting(attrs.Factory(usable_cores), int, 0, MAX_WORKERS)
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
    """Who may connect: anonymous clients, static users, and device tokens (a username
    that is not a static user is a token, looked up in the accounts tables by the gate,
    ``mqttd.edge.gate``)."""

    allow_anonymous: bool = _setting(False, bool)
    users: tuple = _setting((), (User,))
    # Ubidots' convention is the token as the username; true also wants it as the
    # password ("same token in both fields").
    require_password: bool = _setting(False, bool)
    # CONNECT attempts a second per token, checked before any lookup: at most
    # rate_burst attempts in any rate_burst / rate_per_token seconds (a sliding window:
    # the 5th attempt within one second is refused). 0: off.
    rate_per_token: float = _setting(4.0, float, 0.0, 1_000_000.0)
    rate_burst: int = _setting(4, int, 1, 1_000_000)
    # Seconds an unknown token is answered from memory (a storm of bad tokens reaches
    # the database once per token); 0: no negative cache. Cleared by every change of
    # accounts or tokens (not of bans).
    negative_cache_ttl: float = _setting(10.0, float, 0.0, 86_400.0)
    # Known tokens kept in memory (about 400 bytes each); 0: every CONNECT looks up.
    token_cache_size: int = _setting(100_000, int, 0, 10_000_000)
    # Seconds between the gate's looks at the store's change counter: accounts, tokens
    # and bans changed by the CLI apply (and kick) within this time.
    reload_interval: float = _setting(0.5, float, 0.01, 3600.0)
    # Static ACL rules, first match wins; what no rule matches is acl_no_match's.
    acl: tuple = _setting((), (AclRule,))
    acl_no_match: str = _setting("allow", str, choices=("allow", "deny"))


@attrs.frozen
class FlappingDetectConfig:
    """EMQX's flapping_detect: a client that disconnects ``max_count`` times within
    ``window_time`` seconds is banned for ``ban_time`` seconds (by client id; also by
    username and by IP address when asked). ``dry_run`` logs "would ban" only."""

    enable: bool = _setting(True, bool)
    max_count: int = _setting(15, int, 1, 10_000)
    window_time: float = _setting(60.0, float, 0.001, 86_400.0)
    ban_time: float = _setting(300.0, float, 0.001, 315_360_000.0)
    by_username: bool = _setting(False, bool)
    by_ip: bool = _setting(False, bool)
    dry_run: bool = _setting(False, bool)


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
class ManageConfig:
    """The operator's side (``mqttd.manage``). ``http_listen``: Prometheus ``/metrics``
    (the whole tree's figures), ``/healthz`` and ``/report`` on a Twisted endpoint,
    loopback only unless ``http_allow_remote``; "" turns it off. The checks of
    ``mqttd.manage.watch``: the $SYS topics, the canary, the devices gone silent.

    ``manhole_listen``: the telnet manhole (a Python prompt in the master with helpers
    over the whole tree, ``mqttd.manage.manhole``), on a loopback ``tcp:`` interface or
    a ``unix:`` socket only, never the network: it can kick, ban and read everything.
    It is off while ``manhole_password_file`` (lines ``USER:PASSWORD``) is ""."""

    http_listen: str = _setting("tcp:9883:interface=127.0.0.1", str)
    http_allow_remote: bool = _setting(False, bool)
    manhole_listen: str = _setting("tcp:9884:interface=127.0.0.1", str)
    manhole_password_file: str = _setting("", str)
    # The manhole's bounds (mqttd.manage.manhole): its connections open at once, logged
    # in or not (more are told so and closed); seconds a login may take; seconds the
    # prompt waits for a helper's answer before it prompts again (the answer is printed
    # when it comes); seconds a logged-in session may go without a keystroke before it
    # is closed (0: no limit, as sshd's default).
    manhole_max_sessions: int = _setting(16, int, 1, 1024)
    manhole_login_timeout: float = _setting(60.0, float, 1.0, 3600.0)
    manhole_answer_wait: float = _setting(30.0, float, 1.0, 3600.0)
    manhole_idle_timeout: float = _setting(0.0, float, 0.0, 86_400.0)
    # Seconds between two publications of the $SYS/broker/... topics (mosquitto's
    # sys_interval, its default too), from the whole tree's figures; 0: none.
    sys_interval: float = _setting(10.0, float, 0.0, 86_400.0)
    # Seconds between two canary publishes (QoS 1 through a real listener, its row then
    # looked up in SQLite; mqttd.manage.canary); 0: no canary. The Debian package's
    # configuration sets 60.
    canary_interval: float = _setting(0.0, float, 0.0, 86_400.0)
    # A device is listed as silent once it has not published for gap_factor times its
    # median interval (mqttd.manage.gaps); 0: no gap detection.
    gap_factor: float = _setting(5.0, float, 0.0, 1000.0)
    # Devices whose intervals each broker process learns (about 500 bytes each); past
    # it the one silent longest is forgotten.
    gap_max_devices: int = _setting(100_000, int, 1, 10_000_000)
    # The per-client trace (mqttd.manage.tracer): a JSON-lines file every process of
    # the tree appends to; "" turns the trace off. The window of recent events per client
    # (``trace(client_id)``), per process: clients kept, bytes in all, bytes per client.
    trace_file: str = _setting("", str)
    trace_window_clients: int = _setting(10_000, int, 0, 10_000_000)
    trace_window_bytes: int = _setting(16_777_216, int, 0, 1 << 36)
    trace_window_client_bytes: int = _setting(16_384, int, 8192, 1_048_576)
    # Seconds between two looks at the trace rules (mqttd trace add|rm).
    trace_poll_interval: float = _setting(0.5, float, 0.05, 60.0)


@attrs.frozen
class ClusterConfig:
    """Several appliances side by side sharing the gate's state in Redis
    (``mqttd.cluster``): account quotas, flapping windows and bans. ``redis_url`` empty
    (the default): embedded, every count in this appliance's memory.

    ``node_name`` names this appliance in Redis and in the logs (default: the host's
    name); its counts are kept under it and a boot id, so a restart never inherits
    the counts of the run before. When Redis is unreachable each decision falls back
    to this appliance's own state (logged, ``cluster_redis_up`` 0), and it reconnects
    with a backoff from ``reconnect_initial`` to ``reconnect_max`` seconds.
    """

    redis_url: str = _setting("", str, secret=True)  # it may carry a password
    node_name: str = _setting(attrs.Factory(socket.gethostname), str)
    key_prefix: str = _setting("mqttd:", str)
    # Seconds for Redis to answer one command; past it the connection is dropped and
    # this decision (and the next, until it is back) is made from this node's state.
    timeout: float = _setting(0.5, float, 0.01, 60.0)
    connect_timeout: float = _setting(2.0, float, 0.01, 600.0)
    reconnect_initial: float = _setting(0.5, float, 0.01, 600.0)
    reconnect_max: float = _setting(10.0, float, 0.01, 3600.0)
    # This node's heartbeat lives this long in Redis (renewed every third of it): the
    # quota seats of a node that died are given back to the others after it.
    node_ttl: float = _setting(10.0, float, 0.1, 3600.0)
    # Seconds between looks at the cluster's ban log: a ban made on another node is
    # enforced (and kicks) here within this time.
    poll_interval: float = _setting(0.25, float, 0.01, 60.0)
    # Ban changes the log in Redis keeps (about 300 bytes each): a node that fell
    # further behind reads the whole ban list again.
    max_ban_log: int = _setting(10_000, int, 100, 10_000_000)
    # Seconds a removed ban is remembered, so a node that was away while it was
    # removed takes it out instead of putting it back.
    removed_ban_ttl: float = _setting(86_400.0, float, 1.0, 315_360_000.0)


@attrs.frozen
class Config:
    server: ServerConfig = attrs.field(factory=ServerConfig)
    broker: BrokerConfig = attrs.field(factory=BrokerConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    flapping_detect: FlappingDetectConfig = attrs.field(factory=FlappingDetectConfig)
    ingest: IngestConfig = attrs.field(factory=IngestConfig)
    webhook: WebhookConfig = attrs.field(factory=WebhookConfig)
    manage: ManageConfig = attrs.field(factory=ManageConfig)
    cluster: ClusterConfig = attrs.field(factory=ClusterConfig)
