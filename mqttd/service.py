"""Builds the service tree that twistd runs.

One process for now: MQTT listeners, each behind the door (``mqttd.edge``: bans, caps
and connect rates at accept), feeding one broker, whose message store is the
webhook client; the built-in ingest tier (webhook + group commit + SQLite) runs beside
it. With ``server.workers`` >= 1 the process tree (mqttd.tree) is built from the same
pieces (``webhook_sink``, ``broker_stop``, ``add_ingest``).

Services stop one after another, in reverse order of addition (``SequentialStop``):
MQTT listeners first (no new clients), then the broker's clean stop (``BrokerStop``:
what was read is committed and acknowledged), then the ingest tier (every batch it
accepted is committed before the database closes).
"""
import functools
import os
import sqlite3

from twisted.application.service import Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger

from mqttd.broker.acl import AclRules
from mqttd.broker.broker import Broker
from mqttd.broker.persistence import MemoryPersistence, SqlitePersistence
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.edge.door import Door
from mqttd.edge.guard import DoorFactory, closes_at_accept, is_tls
from mqttd.edge.tls_failures import HandshakeWatch, TLSFailures
from mqttd.errors import ConfigError
from mqttd.gatekeeping import GateService
from mqttd.ingest.client import WebhookSink
from mqttd.ingest.credentials import new_secret
from mqttd.ingest.http_client import build_http_client
from mqttd.ingest.service import IngestService, exit_failed, prepare_database
from mqttd.listeners import KeyedListener, server_endpoint as _endpoint, with_backlog
from mqttd.manage.sys_topics import publish_sys
from mqttd.manage.trace_service import single_trace
from mqttd.manage.tree_metrics import TreeMetrics
from mqttd.manage.watch import Watch, watch_broker, with_canary
from mqttd.metrics import Metrics
from mqttd.reload import acl_part, max_connections_part
from mqttd.stopping import BrokerStop, SequentialStop
from mqttd.store.data_dir import make_data_dir
from mqttd.store.rehome import rehome_sessions
from mqttd.store.schema import SchemaError
from mqttd.store.sqlite import DB_FILENAME

log = Logger()


def _built_in_ingest_endpoint(reactor, description):
    """The built-in tier's endpoint, which the broker's own client must be able to reach.

    That client speaks plain HTTP over TCP to the address the tier reports once bound
    (``http://HOST:PORT``), so only ``tcp:``/``tcp6:`` work here. A ``unix:`` or
    ``ssl:`` listener would bind fine and every message would then wait for an address
    or a handshake that never comes, until its ack timeout: refused at start instead.
    """
    endpoint = _endpoint(reactor, "ingest.listen", description)
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        raise ConfigError(
            f"ingest.listen: the broker reaches its built-in ingest tier over plain TCP "
            f"(tcp:PORT:interface=127.0.0.1), got {description!r}; other endpoints work "
            f"only when webhook.url points elsewhere")
    return endpoint


def _log_port(port, description):
    address = port.getHost()
    log.info(
        "mqttd listening on {description} ({host}:{port})",
        description=description,
        host=getattr(address, "host", address),
        port=getattr(address, "port", ""),
    )
    return port


class _Listener(KeyedListener):
    """An MQTT listener that logs where it listens (``address``, once bound)."""

    address = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self._waitingForPort.addCallback(_log_port, self.description)
        self._waitingForPort.addCallback(self._bound)

    def _bound(self, port):
        self.address = port.getHost()
        return port


def rehome_persistent_sessions(config, home):
    """Before any broker opens its sessions file: move each persistent session to the
    file of the broker its client id now reaches (``home``: client id -> slot), as
    ``server.workers`` may have changed since they were saved (mqttd.store.rehome)."""
    if not persists_locally(config):
        return
    data_dir = config.server.data_dir
    try:
        moved = rehome_sessions(data_dir, home)
    except (SchemaError, OSError, sqlite3.DatabaseError) as e:
        raise ConfigError(f"server.data_dir: sessions files in {data_dir}: {e}") from None
    if moved:
        log.info("moved {moved} persistent session(s) to the broker their client ids now "
                 "reach (server.workers = {workers})", moved=moved,
                 workers=config.server.workers)


def persists_locally(config):
    """Do brokers keep their retained messages and sessions in this data dir's SQLite?
    Only when the built-in tier stores their messages."""
    return config.ingest.enabled and not config.webhook.url


def broker_persistence(reactor, config, slot):
    """The broker's retained messages and persistent sessions (``slot``: 0 for the single
    process, a worker's slot in the tree): in SQLite when the built-in tier stores this
    broker's messages; with webhook.url elsewhere there is nothing local to rebuild from."""
    if persists_locally(config):
        return SqlitePersistence.in_data_dir(reactor, config.server.data_dir, slot)
    log.warn("webhook.url points to an external service: retained messages and "
             "persistent sessions are kept in memory only and lost on a restart")
    return MemoryPersistence()


def build_broker(reactor, config, sink, metrics, slot, authenticator):
    """The broker of the single process (``slot`` 0) or of a tree's worker: who may
    connect (``authenticator``: the gate, or a worker's static users), the static ACL
    compiled once (``auth.acl``), and what it keeps across restarts."""
    return Broker(reactor, config.broker, sink, authenticator, metrics,
                  persistence=broker_persistence(reactor, config, slot),
                  acl=AclRules(config.auth.acl, config.auth.acl_no_match),
                  static_users=(user.username for user in config.auth.users))


class PersistenceService(Service):
    """Loads the broker's retained messages and sessions at start (CONNECTs wait for
    it), saves and closes at stop. A load that fails stops mqttd: it would forget."""

    def __init__(self, reactor, broker, on_loaded=None):
        self._reactor = reactor
        self.broker = broker
        self._on_loaded = on_loaded  # called once loaded (the tree's Crossing waits for it)
        self.loaded = None  # True once loaded, False if the load failed (/healthz)

    def startService(self):
        super().startService()
        loading = self.broker.start()
        loading.addCallback(self._mark_loaded)
        if self._on_loaded is not None:
            loading.addCallback(self._loaded)
        loading.addErrback(self._failed)

    def _mark_loaded(self, result):
        self.loaded = True
        return result

    def _loaded(self, result):
        self._on_loaded()
        return result

    def _failed(self, failure):
        if not self.running:
            return  # stopped before its load finished: the load was abandoned, not failed
        self.loaded = False
        log.failure("loading retained messages and sessions failed; stopping mqttd", failure)
        self._reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
        self._reactor.stop()

    def stopService(self):
        super().stopService()
        return self.broker.persistence.stop()


def build_service(config, reactor):
    """The MultiService for ``config``: ingest tier, webhook client, broker, listeners."""
    config = with_canary(config)  # the canary's user, before the gate reads the users
    make_data_dir(config)
    root = SequentialStop()
    # The process's one counter registry: every tier counts into it (mqttd.metrics).
    root.metrics = metrics = Metrics()

    # The built-in tier's secret: ingest.secret, or made now, known to this process only
    # (the broker's own client gets it here; it is never logged). The client sends it
    # only to the built-in tier: to webhook.url it sends webhook.secret, if any.
    tier_secret = (config.ingest.secret or new_secret()) if config.ingest.enabled else None
    # One broker, slot 0: every session is its own (the tree's workers may have left
    # theirs in sessions-1.db ... when server.workers was N).
    rehome_persistent_sessions(config, lambda client_id: 0)
    store, pool = webhook_sink(config, reactor, metrics, config.webhook.url or None,
                                 config.webhook.secret if config.webhook.url else tier_secret)
    if config.ingest.enabled:
        if config.webhook.url:
            on_address = None
            endpoint = _endpoint(reactor, "ingest.listen", config.ingest.listen)
        else:
            on_address = store.set_url
            endpoint = _built_in_ingest_endpoint(reactor, config.ingest.listen)
    # The gate (accounts, tokens, bans, quotas, flapping) answers every CONNECT: the
    # first service to start, the last to stop (after the listeners and the broker).
    # Its accounts live in mqttd.db, also when webhook.url stores the messages elsewhere.
    gate = GateService(reactor, config, metrics)
    gate.setServiceParent(root)
    # The per-client trace (manage.trace_file; else NoTrace): stops after the broker, so
    # the clean stop's disconnects are written.
    root.trace = trace = single_trace(reactor, config, metrics)
    trace.setServiceParent(root)
    if config.ingest.enabled:
        root.ingest = add_ingest(root, config, reactor, metrics, endpoint, tier_secret,
                                 on_address)
    broker = build_broker(reactor, config, store, metrics, 0, gate)
    gate.set_kick(broker.kick)
    broker.tracer = trace.tracer
    gaps = watch_broker(config, reactor, broker, "mqttd")  # its devices' silences
    # Starts after the ingest tier, which has prepared mqttd.db (its retained table) by
    # then; stops after the broker's clean stop, which it saves.
    persistence = PersistenceService(reactor, broker)
    persistence.setServiceParent(root)
    broker_stop(reactor, config, broker, store, pool).setServiceParent(root)  # before the tier
    factory = MQTTServerFactory(broker, reactor)
    # Every MQTT socket meets the door at accept, before a byte is read; its refusals
    # share the broker's per-address budget of log lines.
    door = Door(reactor, config.limits, config.broker.max_connections, metrics,
                broker.connection_log, bans=gate.bans)
    listeners = []
    for index, description in enumerate(config.server.listen):
        key = f"server.listen[{index}]"
        endpoint = _endpoint(reactor, key, with_backlog(description))
        handshakes = None
        if is_tls(endpoint):  # its failed handshakes: counted, logged within the budget
            handshakes = HandshakeWatch(reactor, config.broker.idle_timeout,
                                        TLSFailures(metrics, broker.connection_log, key))
        guarded = DoorFactory(door, factory, closes_at_accept(endpoint), handshakes, key,
                              _refused_hook(trace.tracer))
        listeners.append(_Listener(endpoint, guarded, key, description))
        listeners[-1].setServiceParent(root)
    root.broker = broker
    root.door = door
    root.gate = gate
    # What SIGHUP reloads besides the door (mqttd.reload): the gate, the broker's ACL.
    root.reload_parts = (gate.reloading, acl_part(broker.tenancy.reload),
                         max_connections_part(broker.reload_max_connections))
    # What manage.http_listen serves (mqttd.manage.http): this process is the whole tree.
    root.tree_metrics = TreeMetrics(reactor, metrics, "mqttd")
    root.health = functools.partial(_loaded_health, persistence)
    root.webhook = store
    # Alerts, the canary (through a listener above), gaps, $SYS: stopped first.
    root.watch = Watch(reactor, config, root.tree_metrics, metrics,
                       sys_out=lambda values: publish_sys(broker, values),
                       listeners=lambda: [(l.description, l.address) for l in listeners],
                       ready=lambda: root.health()[0], local_gaps=gaps)
    root.watch.setServiceParent(root)
    return root


def _refused_hook(tracer):
    """The door's refusals, as the trace's ``refused`` events (None: trace off)."""
    if tracer is None:
        return None
    return lambda addr, refusal: tracer.refused(addr, refusal.limit, refusal.reason)


def _loaded_health(persistence):
    """/healthz of the single process: it serves once the broker has loaded what it kept."""
    if persistence.loaded:
        return True, "ok"
    if persistence.loaded is None:
        return False, "loading retained messages and sessions"
    return False, "loading retained messages and sessions failed"


def add_ingest(root, config, reactor, metrics, endpoint, secret, on_address=None):
    """The built-in ingest tier on ``endpoint``, its database prepared now (under ``root``)."""
    db_path = os.path.join(config.server.data_dir, DB_FILENAME)
    prepare_database(db_path)
    ingest = IngestService(reactor, config.ingest, db_path, endpoint, secret, on_address,
                           metrics)
    ingest.setServiceParent(root)
    return ingest


def webhook_sink(config, reactor, metrics, url, secret):
    """The broker's message sink, the webhook client (posting to ``url``, None until the
    built-in tier says where it listens, with ``secret``), and its connection pool."""
    http, pool = build_http_client(reactor, config.webhook)
    sink = WebhookSink(reactor, config.webhook, http, url, secret=secret or None,
                       metrics=metrics)
    return sink, pool


def broker_stop(reactor, config, broker, sink, pool):
    """The service whose stop commits and acknowledges what ``broker`` has read: each
    request in flight gets up to ``webhook.request_timeout`` for its answer."""
    return BrokerStop(reactor, broker, sink, pool, drain_timeout=config.webhook.request_timeout)
