"""The one registry every counter of a process lives in.

Each tier bumps its own fields here instead of keeping counters of its own, so one name
means one thing: ``mqtt_publish_received`` counts PUBLISH packets read from clients,
``webhook_submitted`` messages handed to the webhook client, ``ingest_rows_committed``
rows the ingest tier committed. (Before, ``received`` and ``duplicates`` meant different
things on the broker and on the webhook client.) The operability work exports this
registry with prometheus_client; ``samples()`` is what it reads.

Plain int fields on one slotted object: a bump on the hot path is one attribute
increment, no call and no lock (the reactor thread is the only writer). Fields with
labels (``labels=("reason",)``) are ``collections.Counter`` keyed by the label value.
Histograms (``Histogram``: fixed bucket bounds, a count per bucket and a sum) are for
what is timed once per request or commit, never per message; their bounds are part of
the declaration, so the tree sums them bucket by bucket (``mqttd.manage.tree_metrics``).
A derived gauge (``DERIVED``) is computed from counters when read, costing nothing on
the hot path: ``mqtt_publish_pending`` is received minus stored minus not stored.
"""
from bisect import bisect_left
from collections import Counter

import attrs

__all__ = ["DERIVED", "Histogram", "LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
"""Seconds: the bounds of the request and commit latency histograms (0.5 ms .. 30 s;
a loopback commit takes milliseconds, webhook.request_timeout is 5 s by default)."""


class Histogram:
    """Observations counted per bucket: ``counts[i]`` those <= ``bounds[i]`` and above
    the bound before (Prometheus' ``le``), ``counts[-1]`` those above every bound."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value):
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self):
        return sum(self.counts)


def _metric(kind, help, labels=()):
    default = attrs.Factory(Counter) if labels else 0
    return attrs.field(default=default,
                       metadata={"kind": kind, "help": help, "labels": labels})


def _counter(help, labels=()):
    return _metric("counter", help, labels)


def _gauge(help, labels=()):
    return _metric("gauge", help, labels)


def _histogram(help, bounds=LATENCY_BUCKETS):
    return attrs.field(factory=lambda: Histogram(bounds),
                       metadata={"kind": "histogram", "help": help, "labels": (),
                                 "bounds": bounds})


def _publish_pending(metrics):
    return (metrics.mqtt_publish_received - metrics.mqtt_publish_stored
            - metrics.mqtt_publish_not_stored)


DERIVED = {
    "mqtt_publish_pending": ("gauge", (
        "received messages not yet settled (neither stored nor not stored): "
        "mqtt_publish_received = mqtt_publish_stored + mqtt_publish_not_stored + this, "
        "at every moment"), _publish_pending),
}
"""name -> (kind, help, function of the registry): gauges computed when read."""


@attrs.define(slots=True, eq=False)
class Metrics:
    """Counters (only ever grow) and gauges (go up and down) of one process."""

    # -- MQTT connections and packets (the broker) ----------------------------------------
    mqtt_connections_open: int = _gauge("MQTT connections open now")
    mqtt_connections_accepted: int = _counter("MQTT connections accepted (sockets counted in)")
    mqtt_connections_refused: int = _counter(
        "MQTT connections closed at once: over broker.max_connections")
    mqtt_protocol_errors: int = _counter("connections closed for a protocol error")
    mqtt_packets_timed_out: int = _counter(
        "connections closed for a packet not finished within broker.packet_timeout")
    mqtt_packets_over_budget: int = _counter(
        "connections closed: their packet did not fit broker.max_partial_bytes")
    mqtt_log_lines_suppressed: int = _counter(
        "per-connection log lines held back by broker.log_lines_per_ip")
    mqtt_publish_received: int = _counter(
        "PUBLISH packets read from clients (every QoS) and wills, handed to the sink")
    mqtt_publish_stored: int = _counter("received messages the sink committed")
    mqtt_publish_not_stored: int = _counter(
        "received messages the sink failed: never acknowledged")
    mqtt_qos2_retransmits: int = _counter(
        "QoS 2 retransmissions answered without storing again (exactly once)")
    mqtt_wills_published: int = _counter("wills submitted after an abnormal disconnect")
    mqtt_delivered: int = _counter("PUBLISH packets written to subscribers")
    mqtt_dropped: int = _counter(
        "messages to subscribers dropped: queue_full, offline (QoS 0 to an offline "
        "session), slow (QoS 0 to a full socket)", labels=("reason",))
    mqtt_sessions_expired: int = _counter("persistent sessions expired (broker.session_expiry)")
    mqtt_sessions_evicted: int = _counter(
        "offline persistent sessions evicted for a new one (broker.max_sessions)")
    mqtt_sessions_refused: int = _counter(
        "persistent sessions refused: broker.max_sessions reached, every one online")

    mqtt_namespace_denied: int = _counter(
        "publishes, subscriptions and wills refused outside the client's namespace: a "
        "$ topic for an account's client, the mounts ($a/) for one without an account "
        "(mqttd.broker.tenancy)", labels=("action",))
    mqtt_acl_denied: int = _counter(
        "publishes, subscriptions and wills refused by the auth.acl rules",
        labels=("action",))
    mqtt_acl_reloads: int = _counter(
        "new auth.acl rules a broker put in force for its live connections (SIGHUP)")
    mqtt_client_ids_refused: int = _counter(
        "CONNECTs refused: a client without an account named a client id under $a/ "
        "(the sessions of accounts' clients)")
    mqtt_connect_refused: int = _counter(
        "CONNECTs the broker refused after authentication, by reason: client id too long "
        "(broker.max_clientid_len), empty client id (broker.allow_zero_length_clientid), "
        "client id reserved, will denied by namespace or acl, max sessions "
        "(broker.max_sessions), not loaded (retained messages and sessions still loading),"
        " no worker (the tree's master: CONNACK 3, no worker up within broker.idle_timeout);"
        " the gate's refusals are edge_gate_refused", labels=("reason",))

    # -- the edge: the door, at accept (mqttd.edge.door) ----------------------------------
    edge_admitted: int = _counter("sockets the door let in at accept")
    edge_connect_closed: int = _counter(
        "sockets the master admitted and closed before their CONNECT was judged, by "
        "reason: idle_timeout (no CONNECT within broker.idle_timeout), protocol_error, "
        "partial_input (broker.max_partial_bytes), packet_timeout, closed (the client "
        "went), internal_error, other", labels=("reason",))
    edge_handoff_failed: int = _counter(
        "judged connections whose hand-off to a worker failed (the client was closed and "
        "reconnects), by reason: refused (the worker could not adopt it), queue_full "
        "(4096 or 16 MiB waiting behind a full window of 256), channel_lost",
        labels=("reason",))
    edge_refused: int = _counter(
        "sockets the door closed at accept, before a byte was read, by the key that "
        "refused them: limits.banned, banned (the gate's bans), broker.max_connections, "
        "limits.max_conn_per_ip, limits.max_conn_rate_per_ip", labels=("limit",))
    edge_connections_open: int = _gauge("sockets the door let in that are still open")
    edge_admitted_by_listener: int = _counter(
        "sockets the door let in, by listener (server.listen[i])", labels=("listener",))
    edge_connections_open_by_listener: int = _gauge(
        "sockets the door let in that are still open, by listener (server.listen[i])",
        labels=("listener",))
    edge_addresses_tracked: int = _gauge(
        "client addresses the door keeps state for (connections open, or a connect-rate "
        "bucket refilling)")

    # -- the edge: the gate, at CONNECT (mqttd.edge.gate, ban_list, flapping) -----------
    edge_gate_accepted: int = _counter(
        "CONNECTs the gate accepted, by method: anonymous, user (auth.users), token",
        labels=("method",))
    edge_gate_refused: int = _counter(
        "CONNECTs the gate refused, by reason: banned, not authorized, bad credentials, "
        "auth rate, bad token, token revoked, account inactive, quota, auth unavailable",
        labels=("reason",))
    edge_gate_negative_hits: int = _counter(
        "token CONNECTs answered from the negative cache of unknown tokens (no lookup)")
    edge_gate_lookups: int = _counter("single-token lookups the gate asked the store for")
    edge_gate_tickets_open: int = _gauge("connections the gate accepted that are still open")
    edge_gate_kicked: int = _counter(
        "live connections the gate asked to close, by reason: banned, bad token, token "
        "revoked, account inactive (after a change), manhole (the operator's kick)",
        labels=("reason",))
    edge_gate_reloads: int = _counter(
        "store changes the gate applied, by what: tokens (accounts or tokens changed: the "
        "token caches cleared), bans (the bans reloaded)", labels=("what",))
    edge_gate_poll_failures: int = _counter("looks at the store's changes that failed (retried)")
    edge_flapping_bans: int = _counter(
        "timed bans the flapping detector made, by kind: clientid, username, ip",
        labels=("kind",))
    edge_flapping_would_ban: int = _counter(
        "bans flapping_detect.dry_run held back, by kind", labels=("kind",))
    edge_bans_active: int = _gauge("bans in force now (client ids, usernames, IPs and networks)")

    # -- the gate: accounts and tokens (mqttd.store.gate_store) ---------------------------
    gate_token_lookups: int = _counter(
        "tokens the gate read from SQLite (its caches answer the rest)")

    # -- the cluster: the gate's state shared in Redis (mqttd.cluster) -------------------
    cluster_redis_up: int = _gauge(
        "1 while this node's link to Redis (cluster.redis_url) is usable, else 0 (also "
        "0 when no Redis is configured)")
    cluster_redis_connects: int = _counter(
        "connections to Redis made usable (the first, and each after a loss)")
    cluster_redis_lost: int = _counter(
        "connections to Redis lost or given up (timeouts, resets, refused logins)")
    cluster_fallbacks: int = _counter(
        "gate decisions made from this node's own state because Redis did not answer, "
        "by job: quota, flapping, bans", labels=("job",))
    cluster_bans_sent: int = _counter("ban changes this node wrote to the cluster's ban log")
    cluster_bans_received: int = _counter(
        "ban changes of other nodes this node applied (put in force, or removed)")
    cluster_resyncs: int = _counter(
        "times this node wrote its seats again and compared the ban list whole (after "
        "a reconnect, a lost heartbeat, or a ban log that ran past it)")

    # -- the webhook client: broker -> ingest ------------------------------------------
    webhook_submitted: int = _counter(
        "messages handed to the webhook client "
        "(= committed + pending + sum of rejected, at every moment)")
    webhook_committed: int = _counter("messages the webhook answered as committed")
    webhook_pending: int = _gauge("messages submitted and not yet committed or rejected")
    webhook_pending_bytes: int = _gauge("payload and topic bytes of webhook_pending")
    webhook_rejected: int = _counter(
        "messages failed by the webhook client, not acknowledged", labels=("reason",))
    webhook_retried: int = _counter(
        "webhook requests retried, by cause: timeout (webhook.request_timeout), "
        "connection (refused, reset, webhook.connect_timeout), http 429, http 5xx "
        "(the status: http 503 is the ingest queue full), no address (the built-in tier "
        "not bound yet), other", labels=("cause",))
    webhook_overloads: int = _counter(
        "times pending reached webhook.max_pending or max_pending_bytes (publishers paused)")
    webhook_already_stored: int = _counter(
        "committed messages the ingest tier had stored before (a retried request)")
    webhook_requests: int = _counter(
        "webhook requests answered or given up, by outcome: committed, retryable (a "
        "timeout, a connection error, 429, 5xx), refused (another 4xx), bad response, "
        "stopping", labels=("outcome",))
    webhook_request_seconds: Histogram = _histogram(
        "seconds from a webhook request's send to its answer (or its failure)")
    webhook_requests_in_flight: int = _gauge(
        "webhook requests sent and not yet answered (at most webhook.pool_size)")
    webhook_pool_size: int = _gauge(
        "webhook.pool_size of this process: requests it may have in flight at once")

    # -- the ingest tier: HTTP webhook, group-commit writer -------------------------------
    ingest_requests: int = _counter(
        "webhook requests by outcome: accepted, unauthorized, malformed, too_large, "
        "unavailable, conflict, error", labels=("outcome",))
    ingest_commits: int = _counter("group commits done")
    ingest_commit_failures: int = _counter("group commits that failed (rolled back)")
    ingest_rows_committed: int = _counter("rows in committed requests, new or already stored")
    ingest_rows_inserted: int = _counter("rows a commit inserted (new keys)")
    ingest_rows_failed: int = _counter("rows of requests whose commit failed")
    ingest_rows_refused: int = _counter("rows refused before a commit (queue full, closed)")
    ingest_rows_conflicting: int = _counter(
        "rows of requests refused for a key stored with other contents (not stored)")
    ingest_queue_rows: int = _gauge(
        "rows waiting for a group commit that has not started (ingest.max_queue)")
    ingest_queue_bytes: int = _gauge(
        "bytes of request bodies waiting for a commit (ingest.max_queue_bytes)")
    ingest_commit_seconds: Histogram = _histogram(
        "seconds a group commit took (the transaction and its fsync)")

    # -- the edge: TLS that mqttd terminates (mqttd.edge.tls_failures) -----------------
    edge_tls_handshake_failed: int = _counter(
        "TLS handshakes that failed, by reason: not_tls (plain bytes on a TLS listener), "
        "timeout (not done within broker.idle_timeout), protocol (version, ciphers, "
        "messages), certificate (refused by either side), closed (the peer closed "
        "halfway), other", labels=("reason",))
    edge_tls_relay_errors: int = _counter(
        "relays of TLS clients in the master (server.workers >= 1) that broke after the "
        "handshake: tls (a TLS error), close_timeout (a side not closed within its "
        "grace), other", labels=("reason",))

    # -- the operator's checks (mqttd.manage.watch: canary, gaps, alerts, $SYS) ----------
    manage_canary_checks: int = _counter(
        "canary publishes (manage.canary_interval) by result: ok, no ack (no PUBACK "
        "within an interval), not stored (acknowledged and not in SQLite), refused "
        "(CONNACK), unreachable (no connection)", labels=("result",))
    manage_canary_failing: int = _gauge("1 while the canary's last check failed, else 0")
    manage_canary_seconds: Histogram = _histogram(
        "seconds from a canary's PUBLISH to its row found in SQLite (or its PUBACK, when "
        "webhook.url stores elsewhere)")
    manage_gap_devices: int = _gauge(
        "devices silent past manage.gap_factor times their median interval")
    manage_gap_devices_tracked: int = _gauge(
        "devices whose publishing intervals are learned (manage.gap_max_devices)")
    manage_gap_devices_dropped: int = _counter(
        "devices forgotten to stay within manage.gap_max_devices (the one silent longest "
        "first)")
    manage_alerts_active: int = _gauge(
        "1 while an alert holds, by alert: webhook_capacity, webhook_retries, "
        "ingest_queue (mqttd.manage.guardrails; the canary's is manage_canary_failing)",
        labels=("alert",))
    manage_alerts_fired: int = _counter("alert episodes begun, by alert", labels=("alert",))
    manage_sys_published: int = _counter(
        "$SYS/broker/... messages published to this process's subscribers "
        "(manage.sys_interval)")

    # -- the process tree: the supervisor in the master ---------------------------------
    tree_restarts: int = _counter(
        "children the supervisor started again after they exited (a failed spawn counts)",
        labels=("child",))

    # -- the process tree: cross-worker delivery (mqttd.tree.crossing, relay) -------------
    tree_forwarded: int = _counter(
        "publishes written to the tree's channels for other workers: by a worker, those "
        "it stored that another worker wanted (or retained); by the master, those it "
        "relayed to a worker")
    tree_forward_received: int = _counter(
        "publishes another worker stored, received to deliver here (or retain)")
    tree_forward_dropped: int = _counter(
        "forwarded publishes dropped, by QoS: the channel held server.max_forward_bytes "
        "(a QoS 0 one half of it); the message is stored, a subscriber elsewhere missed "
        "it", labels=("qos",))
    tree_retained_clears_forgotten: int = _counter(
        "cleared retained topics the master stopped remembering (past 1 MiB of them, "
        "oldest first): a worker restarted later is not told those clears, and keeps "
        "what it read back from SQLite if that differs")

    # -- the per-client trace (mqttd.manage.tracer) ----------------------------------
    trace_events: int = _counter(
        "per-client trace events written, by event: accept, refused, auth, connect, "
        "subscribe, publish, ack, disconnect", labels=("event",))
    trace_write_errors: int = _counter(
        "trace lines dropped: writing manage.trace_file failed")
    trace_window_bytes: int = _gauge(
        "bytes of recent events kept per client (manage.trace_window_bytes, per process)")
    trace_window_clients: int = _gauge(
        "clients with recent events kept (manage.trace_window_clients, per process)")
    trace_window_evicted: int = _counter(
        "clients whose recent events were forgotten to stay within the window's bounds")
    trace_rules: int = _gauge("trace rules in force (mqttd trace add): publishes traced")
    trace_poll_failures: int = _counter("looks at the trace rules that failed (retried)")

    # -- the operator's side: the manhole, the master's questions (mqttd.manage) ---------
    manage_manhole_logins: int = _counter(
        "manhole logins by outcome: accepted, refused (a wrong user or password, logged "
        "with the peer)", labels=("outcome",))
    manage_manhole_sessions: int = _gauge("manhole sessions open now (logged in or not)")
    manage_questions: int = _counter(
        "questions the master asked its workers (the manhole's clients() and trace()), by "
        "outcome: answered, error (the worker could not answer), timeout, lost (the worker went), "
        "refused (too many in flight)",
        labels=("outcome",))

    def samples(self):
        """(name, kind, help, labels, value) for each series of counters and gauges, in
        declaration order, then the derived gauges (histograms: ``histograms()``).

        ``labels`` is a dict (empty for a plain series); a labelled field gives one
        series per label value seen so far.
        """
        for field in attrs.fields(type(self)):
            meta = field.metadata
            if meta["kind"] == "histogram":
                continue
            value = getattr(self, field.name)
            if meta["labels"]:
                (label,) = meta["labels"]
                for key, count in sorted(value.items()):
                    yield field.name, meta["kind"], meta["help"], {label: key}, count
            else:
                yield field.name, meta["kind"], meta["help"], {}, value
        for name, (kind, help, compute) in DERIVED.items():
            yield name, kind, help, {}, compute(self)

    def histograms(self):
        """(name, help, Histogram) of each histogram, in declaration order."""
        for field in attrs.fields(type(self)):
            if field.metadata["kind"] == "histogram":
                yield field.name, field.metadata["help"], getattr(self, field.name)

    def value(self, name, **labels):
        """One series' value (0 for a label value not seen yet), for reports and tests."""
        if name in DERIVED:
            return DERIVED[name][2](self)
        value = getattr(self, name)
        if labels:
            (key,) = labels.values()
            return value[key]
        return value
