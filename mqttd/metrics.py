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
"""
from collections import Counter

import attrs

__all__ = ["Metrics"]


def _metric(kind, help, labels=()):
    default = attrs.Factory(Counter) if labels else 0
    return attrs.field(default=default,
                       metadata={"kind": kind, "help": help, "labels": labels})


def _counter(help, labels=()):
    return _metric("counter", help, labels)


def _gauge(help):
    return _metric("gauge", help)


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
    mqtt_client_ids_refused: int = _counter(
        "CONNECTs refused: a client without an account named a client id under $a/ "
        "(the sessions of accounts' clients)")

    # -- the edge: the door, at accept (mqttd.edge.door) ----------------------------------
    edge_admitted: int = _counter("sockets the door let in at accept")
    edge_refused: int = _counter(
        "sockets the door closed at accept, before a byte was read, by the key that "
        "refused them: limits.banned, banned (the gate's bans), broker.max_connections, "
        "limits.max_conn_per_ip, limits.max_conn_rate_per_ip", labels=("limit",))
    edge_connections_open: int = _gauge("sockets the door let in that are still open")
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
        "live connections the gate asked to close after a change, by reason: banned, "
        "bad token, token revoked, account inactive", labels=("reason",))
    edge_gate_reloads: int = _counter("changes of accounts, tokens or bans the gate applied")
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

    # -- the webhook client: broker -> ingest ------------------------------------------
    webhook_submitted: int = _counter(
        "messages handed to the webhook client "
        "(= committed + pending + sum of rejected, at every moment)")
    webhook_committed: int = _counter("messages the webhook answered as committed")
    webhook_pending: int = _gauge("messages submitted and not yet committed or rejected")
    webhook_pending_bytes: int = _gauge("payload and topic bytes of webhook_pending")
    webhook_rejected: int = _counter(
        "messages failed by the webhook client, not acknowledged", labels=("reason",))
    webhook_retried: int = _counter("webhook requests retried")
    webhook_overloads: int = _counter(
        "times pending reached webhook.max_pending or max_pending_bytes (publishers paused)")
    webhook_already_stored: int = _counter(
        "committed messages the ingest tier had stored before (a retried request)")

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
    manage_questions_unanswered: int = _counter(
        "questions of the master to a worker not answered within a second (trace(...))")

    def samples(self):
        """(name, kind, help, labels, value) for each series, in declaration order.

        ``labels`` is a dict (empty for a plain series); a labelled field gives one
        series per label value seen so far.
        """
        for field in attrs.fields(type(self)):
            meta = field.metadata
            value = getattr(self, field.name)
            if meta["labels"]:
                (label,) = meta["labels"]
                for key, count in sorted(value.items()):
                    yield field.name, meta["kind"], meta["help"], {label: key}, count
            else:
                yield field.name, meta["kind"], meta["help"], {}, value

    def value(self, name, **labels):
        """One series' value (0 for a label value not seen yet), for reports and tests."""
        value = getattr(self, name)
        if labels:
            (key,) = labels.values()
            return value[key]
        return value
