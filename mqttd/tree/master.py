"""The master of the tree: it guards the door, reads each CONNECT, and hands the socket on.

It owns every MQTT listener and accepts on raw sockets (``edge.acceptor``): the door
judges each peer before a byte is read, ``edge.connect_reader`` reads the CONNECT, the
balancer picks the worker by client id, and the hand-off channel passes the socket and
the bytes read to it. The master never parses anything after the CONNECT and never
touches a handed-off socket again, except to count it free when its worker says it
closed (or dies). TLS ends in the master (``edge.tls_connect``): it reads the CONNECT
inside it, hands the worker one end of a socketpair and relays the plaintext.

Its children, under the supervisor and started by ``tree.spawning``: ``server.workers``
broker workers and one ingest child, whose listening socket the master binds (``ingest.listen``) so that the workers'
URL is fixed before any child starts. The gate (``mqttd.gatekeeping``: bans, tokens,
quotas, flapping) judges each CONNECT before the balancer (``_on_connect``); the worker
trusts its answer, carried in the hand-off with the client's account. Publishes cross between workers
through the master, which passes on their subscription interest (``mqttd.tree.relay``).
"""
import functools
import itertools
import os

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from mqttd.broker.budget import PartialInput
from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import CONNACK_ACCEPTED, CONNACK_SERVER_UNAVAILABLE, encode_connack
from mqttd.edge.acceptor import RawAcceptor
from mqttd.edge.balancer import Balancer
from mqttd.edge.connect_reader import PendingConnect
from mqttd.edge.door import Door
from mqttd.edge.sockets import bind_listener
from mqttd.edge.tls_connect import PendingTLSConnect
from mqttd.edge.tls_context import tls_options
from mqttd.gatekeeping import GateService
from mqttd.edge.tls_failures import TLSFailures
from mqttd.ingest.credentials import new_secret
from mqttd.metrics import Metrics
from mqttd.ingest.service import prepare_database
from mqttd.manage.questions import Questions
from mqttd.manage.trace_tree import master_trace
from mqttd.manage.tree_metrics import TreeMetrics
from mqttd.manage.watch import Watch, with_canary
from mqttd.namespace import session_key
from mqttd.reload import ACL_MESSAGE, acl_changed, acl_payload, running_config
from mqttd.service import persists_locally, rehome_persistent_sessions
from mqttd.store.data_dir import make_data_dir
from mqttd.store.sqlite import DB_FILENAME
from mqttd.tree.connect_outcomes import INTERNAL_ERROR, STOPPING, ConnectOutcomes
from mqttd.tree.health import tree_health
from mqttd.tree.proctitle import process_name, set_process_name
from mqttd.tree.relay import Relay
from mqttd.tree.spawning import Spawner
from mqttd.tree.supervisor import Supervisor
from mqttd.tree.waiting_room import Let, WaitingRoom

log = Logger()


class Master(MultiService):
    def __init__(self, reactor, config):
        super().__init__()
        self._reactor = reactor
        self._config = config = with_canary(config)  # its user, before the gate reads them
        self.metrics = metrics = Metrics()
        # Every process's registry, summed: the children report theirs every second.
        self.tree_metrics = TreeMetrics(reactor, metrics, process_name("master"))
        self._ingest_link = None
        # Refusals log through a per-address budget of lines, so a flood cannot flood the log.
        log_rate = LogRateLimit(reactor, config.broker.log_lines_per_ip,
                                config.broker.log_lines_window, metrics=metrics)
        make_data_dir(config)
        # Every CONNECT is judged here; the gate kicks through the worker holding it.
        self.gate = GateService(reactor, config, metrics, kick=self._kick)
        self.door = Door(reactor, config.limits, config.broker.max_connections, metrics,
                         log_rate, bans=self.gate.bans)
        # CONNECTs being read, all sockets together: broker.max_partial_bytes, and each
        # complete within broker.packet_timeout (and idle_timeout of its accept).
        self._partial_input = PartialInput(reactor, config.broker.max_partial_bytes,
                                           config.broker.packet_timeout, metrics)
        self.balancer = Balancer(range(1, config.server.workers + 1))
        # Judged connections no worker can take yet (the start, every worker down).
        self.waiting = WaitingRoom(
            reactor, self.balancer, config.server.workers, config.broker.idle_timeout,
            self._hand_off, lambda pending, connect, let, reason: self._refuse_let_in(
                pending, connect, let.client_id, let.account, reason, let.ticket))
        # Two supervisors, so a stop can be ordered: the workers finish the commits in
        # flight and send their acks (up to webhook.request_timeout, then a few seconds
        # to close) while the ingest child still answers; it stops after they exited.
        worker_stop = config.webhook.request_timeout + 5.0
        self.supervisor = Supervisor(reactor, metrics, kill_timeout=worker_stop)
        self.ingest_supervisor = Supervisor(reactor, metrics)
        # A starting worker reads the retained set back from SQLite when it keeps one;
        # else the master sends it what it has kept.
        self.relay = Relay(metrics, config.server.max_forward_bytes,
                           retained_at_start=not persists_locally(config))
        self._ids = itertools.count(1)
        self._boot_id = os.urandom(8).hex()  # for the ids of clients that sent none
        self._connections = {}  # conn_id -> (slot, host, client id, ticket, listener)
        # Session key (client id within its account, mqttd.namespace.session_key) ->
        # (slot, conn_id) of its newest connection: two accounts' "dev-1" are two.
        self._where = {}
        self._said_ready = False  # "mqttd tree ready" is logged once
        self._channels = {}  # slot -> MasterChannel of the live worker
        # What only workers know (their clients), asked for the manhole (mqttd.manage).
        self.questions = Questions(reactor, lambda: {
            process_name("worker", slot): channel for slot, channel in self._channels.items()},
            metrics)
        # The per-client trace (manage.trace_file): the master's events, the tree's window.
        self.trace = master_trace(reactor, config, metrics, process_name("master"),
                                  lambda: dict(self._channels), self.questions)
        self.trace.setServiceParent(self)
        # Sockets closed before their CONNECT was judged, refused here after it, hand-offs
        # that failed: counted, logged and traced.
        self._outcomes = ConnectOutcomes(metrics, log_rate, self.trace)
        self._pending = set()  # PendingConnect: admitted, CONNECT not read yet
        self._judging = {}  # PendingConnect -> (Connect, client id): the gate not answered yet
        self._acceptors = []
        if config.ingest.enabled:
            # ingest.secret, or one made now for the tree: both ends learn it from their
            # brief on stdin.
            secret = config.ingest.secret or new_secret()
            self._config = config = attrs.evolve(
                config, ingest=attrs.evolve(config.ingest, secret=secret))
            prepare_database(os.path.join(config.server.data_dir, DB_FILENAME))
        # Each persistent session in the file of the worker its client id reaches now
        # (server.workers, the host's cores by default, may have changed since).
        rehome_persistent_sessions(config, self.balancer.home)
        # Builds and starts the children (argv, brief on stdin, fds): mqttd.tree.spawning.
        self._spawner = Spawner(reactor, config, self.tree_metrics, self.relay,
                                config.broker.max_packet_size)
        # ssl: listeners' certificates, read now so a bad one stops start-up in one line.
        self._tls = [tls_options(f"server.listen[{index}]", description)
                     for index, description in enumerate(config.server.listen)]
        # Their failed handshakes and broken relays: counted, logged within the budget.
        self._tls_failures = [
            None if tls is None else TLSFailures(metrics, log_rate, f"server.listen[{index}]")
            for index, tls in enumerate(self._tls)]
        # Alerts, the canary (through our own listeners), gaps, $SYS to every worker.
        self.watch = Watch(reactor, config, self.tree_metrics, metrics, sys_out=lambda values: [
            channel.send("sys", {"values": values}) for channel in self._channels.values()],
            listeners=lambda: [(description, acceptor.address) for description, acceptor
                               in zip(config.server.listen, self._acceptors)],
            ready=lambda: self.health()[0])
        self.watch.setServiceParent(self)
        # What SIGHUP reloads besides the door (mqttd.reload): the gate, the workers' ACL.
        self.reload_parts = (self.gate.reloading, self._reloading_workers)

    def _reloading_workers(self, old, new):
        """SIGHUP's reloaded keys in the brief of every worker started from then on; to
        the live ones, what their brokers hold: new ACL rules, a new max_connections
        (each broker checks it beside the door)."""
        payload = acl_payload(new.auth) if acl_changed(old, new) else None
        cap = new.broker.max_connections
        cap_changed = cap != old.broker.max_connections

        def apply():
            self._config = running_config(self._config, new)
            self._spawner.reconfigure(self._config)
            for channel in self._channels.values():
                if payload is not None:
                    channel.send(ACL_MESSAGE, payload)
                if cap_changed:
                    channel.send("max_connections", {"max_connections": cap})
        return apply

    # -- start and stop ---------------------------------------------------------------

    def privilegedStartService(self):
        # Bound before privileges are dropped, as twistd's own ports are: 1883 and 8883
        # need no root, but a configured port below 1024 would.
        config = self._config
        for index, description in enumerate(config.server.listen):
            key = f"server.listen[{index}]"
            sock = bind_listener(key, description)
            tls = self._tls[index]
            on_admitted = (functools.partial(self._admitted, listener=key) if tls is None
                           else functools.partial(self._tls_admitted, tls,
                                                  self._tls_failures[index], listener=key))
            acceptor = RawAcceptor(self._reactor, sock, key, self.door, on_admitted,
                                   self.trace.at_accept)
            self._acceptors.append(acceptor)
            address = sock.getsockname()
            log.info("mqttd listening on {description} ({host}:{port})",
                     description=description,
                     host=address[0] if isinstance(address, tuple) else address,
                     port=address[1] if isinstance(address, tuple) else "")
        ingest_url = None
        if config.ingest.enabled:  # bound first, so the workers' URL is fixed
            self._ingest_link, ingest_url = self._spawner.add_ingest(
                config.ingest, self.ingest_supervisor)
        for slot in range(1, config.server.workers + 1):
            self._spawner.add_worker(self.supervisor, slot, ingest_url, self._worker_said,
                                     self._worker_channel, self._worker_gone)
        super().privilegedStartService()

    def startService(self):
        set_process_name(process_name("master"))
        super().startService()
        self.gate.startService()
        self.ingest_supervisor.startService()
        self.supervisor.startService()
        self.waiting.start()
        for acceptor in self._acceptors:
            acceptor.start()

    @inlineCallbacks
    def stopService(self):
        """Stop accepting; close what never reached a worker (while the trace runs);
        stop the workers (each commits and acknowledges what it read); then ingest."""
        for acceptor in self._acceptors:
            acceptor.stop()
        for pending in list(self._pending):
            pending.abandon()
        judging, self._judging = self._judging, {}
        for pending, (connect, client_id) in judging.items():
            self._refuse_let_in(pending, connect, client_id, None, STOPPING)
        self.waiting.stop()
        super().stopService()
        yield self.supervisor.stopService()
        yield self.ingest_supervisor.stopService()
        yield self.gate.stopService()

    # -- children ---------------------------------------------------------------------

    def _worker_channel(self, slot, channel):
        """A run of worker ``slot`` started: its channel is the one to talk to."""
        channel.when_lost().addBoth(lambda _: self._channel_lost(slot, channel))
        self._channels[slot] = channel
        self.relay.attach(slot, channel)

    def _worker_said(self, slot, kind, payload):
        if kind == "ready":
            self.balancer.up(slot)
            log.info("worker {slot} ready", slot=slot)
            if len(self.balancer.live) == self._config.server.workers:
                if not self._said_ready:
                    # Said once, when every worker is first up (even past the start's
                    # wait), so an operator and the integration tests can tell the tree
                    # serves every client id at home, not only that the master listens.
                    self._said_ready = True
                    log.info("mqttd tree ready: {workers} workers up",
                             workers=self._config.server.workers)
                self.waiting.started()
            self.waiting.dispatch()
            self.trace.worker_ready(slot)
        elif kind == "closed":
            self._release(payload.get("conn_id"))
        elif kind == "interest":
            self.relay.interest_from(slot, payload)
        elif kind == "loaded":  # its retained set read back: the master's order over it
            self.relay.loaded(slot)
        elif kind == "metrics":
            self.tree_metrics.report(process_name("worker", slot), payload)
        elif kind == "answer":
            self.questions.answered(process_name("worker", slot), payload)
        else:
            log.warn("worker {slot}: unknown message {kind!r}", slot=slot, kind=kind)

    def _channel_lost(self, slot, channel):
        if self._channels.get(slot) is channel:  # not an older worker's channel
            self._worker_gone(slot)

    def _worker_gone(self, slot):
        """A worker died or its channel broke: none of its connections lives on."""
        self.balancer.down(slot)
        self.relay.detach(slot)
        self.tree_metrics.gone(process_name("worker", slot))
        self.questions.gone(process_name("worker", slot))
        channel = self._channels.pop(slot, None)
        if channel is not None:
            channel.close()
        for conn_id, (owner, *_) in list(self._connections.items()):
            if owner == slot:
                self._release(conn_id)

    def health(self):
        """(healthy, reason) for /healthz: every worker ready, the ingest child up."""
        return tree_health(self._config.server.workers, self.balancer, self.tree_metrics,
                           self._ingest_link)

    # -- one connection ---------------------------------------------------------------

    def _admitted(self, sock, host, listener=None):
        self._pending.add(PendingConnect(self._reactor, sock, host, self._config.broker,
                                         self._on_connect, self._not_connected,
                                         self._partial_input, listener))

    def _tls_admitted(self, tls, failures, sock, host, listener=None):
        # TLS ends here: the master relays the plaintext for the connection's life.
        pending = PendingTLSConnect(self._reactor, tls, sock, host, self._config.broker,
                                    self._on_connect, self._not_connected,
                                    self._partial_input, failures, listener)
        self._pending.add(pending)
        pending.start()

    def _not_connected(self, pending, reason):
        self._pending.discard(pending)
        self.door.release(pending.host, pending.listener)
        self._outcomes.closed(pending, reason)

    def _on_connect(self, pending, connect):
        """The CONNECT is read: the gate judges it (under the id the connection will
        have: one made here for an empty one, so quotas and kicks can name it)."""
        self._pending.discard(pending)
        client_id = connect.client_id or f"mqttd-{self._boot_id}-{next(self._ids)}"
        self._judging[pending] = (connect, client_id)
        d = self.gate.authenticate(client_id, connect.username, connect.password,
                                   pending.host)
        d.addCallback(self._judged, pending, connect, client_id)
        d.addErrback(self._judging_failed, pending, connect, client_id)

    def _judging_failed(self, failure, pending, connect, client_id):
        """A bug on the gate's path: logged; if the gate itself failed, the client gets
        CONNACK 3 and its door slot back (past the gate, its hand-off owns it)."""
        self._outcomes.judging_failed(pending.host, failure)
        if self._judging.pop(pending, None) is not None:
            self._refuse_let_in(pending, connect, client_id, None, INTERNAL_ERROR)

    def _judged(self, result, pending, connect, client_id):
        if pending not in self._judging:  # stopping: its socket is closed already
            if result.ticket is not None:
                result.ticket.release()
            return
        del self._judging[pending]
        self.trace.judged(pending, connect, client_id, result)
        if result.code != CONNACK_ACCEPTED:  # counted and logged by the gate
            self._refuse(pending, result.code)
            return
        self.waiting.enter(pending, connect,
                           Let(client_id, result.account, result.ticket, not connect.client_id))

    def _refuse_let_in(self, pending, connect, client_id, account, reason, ticket=None):
        """CONNACK 3 from the master itself, for ``reason``: counted, logged, traced."""
        self._outcomes.refused(pending, connect, client_id, account, reason,
                               CONNACK_SERVER_UNAVAILABLE)
        self._refuse(pending, CONNACK_SERVER_UNAVAILABLE, ticket)

    def _refuse(self, pending, code, ticket=None):
        """Answer ``pending``'s CONNECT with CONNACK ``code`` and close it, here."""
        if ticket is not None:
            ticket.release()
        try:
            pending.sock.send(encode_connack(False, code))
        except OSError:
            pass
        pending.sock.close()
        self.door.release(pending.host, pending.listener)

    def _hand_off(self, pending, connect, let, slot):
        conn_id = next(self._ids)
        client_id = let.client_id
        key = session_key(let.account, client_id)
        self._connections[conn_id] = (slot, pending.host, key, let.ticket, pending.listener)
        self.balancer.opened(slot)
        if not let.generated:
            previous = self._where.get(key)
            if previous is not None and previous[0] != slot:
                # It lives on another worker (it went there while this one restarted):
                # that one closes it, as a takeover on one worker would.
                channel = self._channels.get(previous[0])
                if channel is not None:
                    channel.send("taken", {"client_id": client_id, "account": let.account})
        self._where[key] = (slot, conn_id)
        sock = pending.sock
        decided = (let.account, client_id if let.generated else None)
        d = self._channels[slot].hand_off(sock.fileno(), pending.preread, conn_id,
                                          pending.peer, decided)
        # Closed here only once the worker holds its own copy (or never will): never
        # shutdown(), which would end the worker's connection too.
        d.addBoth(lambda result: (sock.close(), result)[1])
        d.addErrback(self._handoff_failed, conn_id, pending, connect, let, slot)

    def _handoff_failed(self, failure, conn_id, pending, connect, let, slot):
        self._outcomes.handoff_failed(pending, connect, let.client_id, let.account, slot,
                                      failure)
        self._release(conn_id)

    def _release(self, conn_id):
        entry = self._connections.pop(conn_id, None)
        if entry is None:
            return
        slot, host, key, ticket, listener = entry
        if self._where.get(key, (None, None))[1] == conn_id:
            del self._where[key]
        if ticket is not None:
            ticket.release()
        self.balancer.closed(slot)
        self.door.release(host, listener)

    def _kick(self, client_id, reason, account=None):
        """The gate refuses ``client_id`` of ``account`` now: its worker closes its
        connection."""
        where = self._where.get(session_key(account, client_id))
        channel = None if where is None else self._channels.get(where[0])
        if channel is not None:
            channel.send("kick", {"client_id": client_id, "reason": reason,
                                  "account": account})

