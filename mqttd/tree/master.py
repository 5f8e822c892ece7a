"""The master of the tree: it guards the door, reads each CONNECT, and hands the socket on.

It owns every MQTT listener and accepts on raw sockets (``edge.acceptor``): the door
judges each peer before a byte is read, ``edge.connect_reader`` reads the CONNECT, the
balancer picks the worker by client id, and the hand-off channel passes the socket and
the bytes read to it. The master never parses anything after the CONNECT and never
touches a handed-off socket again, except to count it free when its worker says it
closed (or dies). TLS ends in the master (``edge.tls_connect``): it reads the CONNECT
inside it, hands the worker one end of a socketpair and relays the plaintext.

Its children, under the supervisor: ``server.workers`` broker workers and one ingest
child, whose listening socket the master binds (``ingest.listen``) so that the workers'
URL is fixed before any child starts. The gate (``mqttd.gatekeeping``: bans, tokens,
quotas, flapping) judges each CONNECT before the balancer (``_on_connect``); the worker
trusts its answer, carried in the hand-off with the client's account. Publishes cross between workers
through the master, which passes on their subscription interest (``mqttd.tree.relay``).
"""
import functools
import itertools
import json
import os
import socket

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import inlineCallbacks
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger

from mqttd.broker.budget import PartialInput
from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import CONNACK_ACCEPTED, CONNACK_SERVER_UNAVAILABLE, encode_connack
from mqttd.config import config_document
from mqttd.edge.acceptor import RawAcceptor
from mqttd.edge.balancer import Balancer
from mqttd.edge.connect_reader import PendingConnect
from mqttd.edge.door import Door
from mqttd.edge.handoff import MasterChannel, channel_socketpair, open_channel
from mqttd.edge.sockets import bind_listener
from mqttd.edge.tls_connect import PendingTLSConnect
from mqttd.edge.tls_context import tls_options
from mqttd.gatekeeping import GateService
from mqttd.edge.tls_failures import TLSFailures
from mqttd.ingest.credentials import new_secret
from mqttd.ingest.wire import PATH
from mqttd.metrics import Metrics
from mqttd.ingest.service import not_loopback, prepare_database
from mqttd.manage.trace_tree import master_trace
from mqttd.manage.tree_metrics import TreeMetrics
from mqttd.namespace import session_key
from mqttd.service import make_data_dir, persists_locally, rehome_persistent_sessions
from mqttd.store.sqlite import DB_FILENAME
from mqttd.tree.health import tree_health
from mqttd.tree.ingest_link import IngestLink
from mqttd.tree.proctitle import child_argv, process_name, set_process_name
from mqttd.tree.relay import Relay
from mqttd.tree.relay_wire import frame_limit
from mqttd.tree.supervisor import Supervisor

log = Logger()


def _url(address):
    host, port = address[0], address[1]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{PATH.decode('ascii')}"


class Master(MultiService):
    def __init__(self, reactor, config):
        super().__init__()
        self._reactor = reactor
        self._config = config
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
        # The per-client trace (manage.trace_file): the master's events, the tree's window.
        self.trace = master_trace(reactor, config, metrics, process_name("master"),
                                  lambda: dict(self._channels))
        self.trace.setServiceParent(self)
        self.door = Door(reactor, config.limits, config.broker.max_connections, metrics,
                         log_rate, bans=self.gate.bans)
        # CONNECTs being read, all sockets together: broker.max_partial_bytes, and each
        # complete within broker.packet_timeout (and idle_timeout of its accept).
        self._partial_input = PartialInput(reactor, config.broker.max_partial_bytes,
                                           config.broker.packet_timeout, metrics)
        self.balancer = Balancer(range(1, config.server.workers + 1))
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
        self._connections = {}  # conn_id -> (slot, host, client id, ticket): handed off
        # Session key (client id within its account, mqttd.namespace.session_key) ->
        # (slot, conn_id) of its newest connection: two accounts' "dev-1" are two.
        self._where = {}
        self._starting = True  # until every worker has come up once
        self._said_ready = False  # "mqttd tree ready" is logged once
        self._start_timer = None
        self._channels = {}  # slot -> MasterChannel of the live worker
        self._pending = set()  # PendingConnect: admitted, CONNECT not read yet
        self._judging = set()  # PendingConnect: CONNECT read, the gate not answered yet
        self._waiting = {}  # PendingConnect -> (Connect, _Let, timer): no worker up yet
        self._acceptors = []
        self._ingest_socket = None
        self._ingest_url = None
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
        self._document = config_document(config)
        # ssl: listeners' certificates, read now so a bad one stops start-up in one line.
        self._tls = [tls_options(f"server.listen[{index}]", description)
                     for index, description in enumerate(config.server.listen)]
        # Their failed handshakes and broken relays: counted, logged within the budget.
        self._tls_failures = [
            None if tls is None else TLSFailures(metrics, log_rate, f"server.listen[{index}]")
            for index, tls in enumerate(self._tls)]

    # -- start and stop ---------------------------------------------------------------

    def privilegedStartService(self):
        # Bound before privileges are dropped, as twistd's own ports are: 1883 and 8883
        # need no root, but a configured port below 1024 would.
        config = self._config
        for index, description in enumerate(config.server.listen):
            key = f"server.listen[{index}]"
            sock = bind_listener(key, description)
            tls = self._tls[index]
            on_admitted = (self._admitted if tls is None else functools.partial(
                self._tls_admitted, tls, self._tls_failures[index]))
            acceptor = RawAcceptor(self._reactor, sock, key, self.door, on_admitted,
                                   self.trace.at_accept)
            self._acceptors.append(acceptor)
            address = sock.getsockname()
            log.info("mqttd listening on {description} ({host}:{port})",
                     description=description,
                     host=address[0] if isinstance(address, tuple) else address,
                     port=address[1] if isinstance(address, tuple) else "")
        if config.ingest.enabled:
            self._bind_ingest()
        for slot in range(1, config.server.workers + 1):
            self.supervisor.add(process_name("worker", slot), self._worker_starter(slot),
                                on_exit=lambda name, reason, slot=slot: self._worker_gone(slot))
        super().privilegedStartService()

    def _bind_ingest(self):
        config = self._config
        sock = bind_listener("ingest.listen", config.ingest.listen)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            sock.close()
            raise SystemExit("mqttd: configuration error: ingest.listen: the workers reach "
                             "the built-in ingest tier over TCP")
        if not config.ingest.allow_remote:
            host, port = sock.getsockname()[:2]
            kind = IPv6Address if sock.family == socket.AF_INET6 else IPv4Address
            refusal = not_loopback(kind("TCP", host, port))
            if refusal is not None:
                sock.close()
                raise SystemExit(f"mqttd: configuration error: ingest.listen: {refusal}")
        self._ingest_socket = sock
        self._ingest_url = _url(sock.getsockname())
        log.info("ingest webhook listening on {url}", url=self._ingest_url)
        self._ingest_link = link = IngestLink(self._reactor, self.tree_metrics,
                                              process_name("ingest"))
        self.ingest_supervisor.add(process_name("ingest"), self._ingest_starter(),
                                   on_exit=lambda name, reason: link.gone())

    def startService(self):
        set_process_name(process_name("master"))
        super().startService()
        self.gate.startService()
        self.ingest_supervisor.startService()
        self.supervisor.startService()
        self._start_timer = self._reactor.callLater(self._config.broker.idle_timeout,
                                                    self._started)
        for acceptor in self._acceptors:
            acceptor.start()

    @inlineCallbacks
    def stopService(self):
        """Stop accepting; close what never reached a worker; stop the workers (each
        commits and acknowledges what it read); then the ingest child."""
        super().stopService()
        for acceptor in self._acceptors:
            acceptor.stop()
        for pending in list(self._pending):
            pending.abandon()
        judging, self._judging = self._judging, set()
        for pending in judging:
            self._refuse(pending, CONNACK_SERVER_UNAVAILABLE)
        for pending, (_, let, timer) in list(self._waiting.items()):
            timer.cancel()
            self._refuse(pending, CONNACK_SERVER_UNAVAILABLE, let.ticket)
        self._waiting.clear()
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        yield self.supervisor.stopService()
        yield self.ingest_supervisor.stopService()
        yield self.gate.stopService()

    # -- children ---------------------------------------------------------------------

    def _spawn(self, protocol, brief, fds):
        argv = child_argv(brief["name"])
        child_fds = {0: "w", 1: "r", 2: "r"}
        child_fds.update(fds)
        # env=None: the master's environment (Twisted's default, {}, would empty it).
        transport = self._reactor.spawnProcess(protocol, argv[0], argv, env=None,
                                               childFDs=child_fds)
        transport.writeToChild(0, json.dumps(brief).encode("utf-8"))
        transport.closeStdin()
        return transport

    def _worker_starter(self, slot):
        def start(protocol):
            ours, theirs = channel_socketpair()
            self.tree_metrics.started(process_name("worker", slot))
            brief = {"role": "worker", "slot": slot, "name": process_name("worker", slot),
                     "config": self._document, "ingest_url": self._ingest_url,
                     "channel_fd": 3}
            try:
                transport = self._spawn(protocol, brief, {3: theirs.fileno()})
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            relay = self.relay
            channel = MasterChannel(
                on_message=lambda kind, payload: self._worker_said(slot, kind, payload),
                on_forward=lambda *frame: relay.forward_from(slot, *frame),
                on_drained=lambda: relay.drained(slot, channel),
                max_forward_body=frame_limit(self._config.broker.max_packet_size))
            open_channel(self._reactor, ours, channel)
            channel.when_lost().addBoth(lambda _: self._channel_lost(slot, channel))
            self._channels[slot] = channel
            relay.attach(slot, channel)
            return transport
        return start

    def _ingest_starter(self):
        def start(protocol):
            sock = self._ingest_socket
            brief = {"role": "ingest", "name": process_name("ingest"), "config": self._document,
                     "listen_fd": 3, "channel_fd": 4,
                     "listen_family": "inet6" if sock.family == socket.AF_INET6 else "inet"}
            theirs = self._ingest_link.open()
            try:
                return self._spawn(protocol, brief, {3: sock.fileno(), 4: theirs.fileno()})
            finally:
                theirs.close()
        return start

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
                self._started()
            self._dispatch_waiting()
            self.trace.worker_ready(slot)
        elif kind == "closed":
            self._release(payload.get("conn_id"))
        elif kind == "interest":
            self.relay.interest_from(slot, payload)
        elif kind == "loaded":  # its retained set read back: the master's order over it
            self.relay.loaded(slot)
        elif kind == "metrics":
            self.tree_metrics.report(process_name("worker", slot), payload)
        elif kind == "answer":  # to a question of the manhole's (mqttd.manage.asking)
            self.trace.answered(slot, payload)
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

    def _admitted(self, sock, host):
        self._pending.add(PendingConnect(self._reactor, sock, host, self._config.broker,
                                         self._on_connect, self._not_connected,
                                         self._partial_input))

    def _tls_admitted(self, tls, failures, sock, host):
        # TLS ends here: the master relays the plaintext for the connection's life.
        pending = PendingTLSConnect(self._reactor, tls, sock, host, self._config.broker,
                                    self._on_connect, self._not_connected,
                                    self._partial_input, failures)
        self._pending.add(pending)
        pending.start()

    def _not_connected(self, pending, reason):
        self.trace.not_connected(pending, reason)
        self._pending.discard(pending)
        self.door.release(pending.host)

    def _on_connect(self, pending, connect):
        """The CONNECT is read: the gate judges it (under the id the connection will
        have: one made here for an empty one, so quotas and kicks can name it)."""
        self._pending.discard(pending)
        self._judging.add(pending)
        client_id = connect.client_id or f"mqttd-{self._boot_id}-{next(self._ids)}"
        d = self.gate.authenticate(client_id, connect.username, connect.password,
                                   pending.host)
        d.addCallback(self._judged, pending, connect, client_id)

    def _judged(self, result, pending, connect, client_id):
        if pending not in self._judging:  # stopping: its socket is closed already
            if result.ticket is not None:
                result.ticket.release()
            return
        self._judging.discard(pending)
        self.trace.judged(pending, connect, client_id, result)
        if result.code != CONNACK_ACCEPTED:  # counted and logged by the gate
            self._refuse(pending, result.code)
            return
        let = _Let(client_id, result.account, result.ticket, not connect.client_id)
        slot = self._route(connect)
        if slot is None:
            timer = self._reactor.callLater(self._config.broker.idle_timeout,
                                            self._waited, pending)
            self._waiting[pending] = (connect, let, timer)
            return
        self._hand_off(pending, connect, let, slot)

    def _route(self, connect, waited=False):
        """The worker to hand ``connect`` to now, or None to make it wait.

        A client goes home (the rendezvous choice among every worker) when home is up.
        While the tree starts, everyone waits for their home. A persistent session
        waits for its home while it restarts: its session lives there. A clean one
        takes the best live worker at once, and is taken over from there if it comes
        back home before it goes. Past idle_timeout of waiting, any live worker.
        """
        balancer = self.balancer
        home = balancer.home(connect.client_id)
        if home is not None and balancer.is_live(home):
            return home
        if not waited and (self._starting or (home is not None and not connect.clean_session)):
            return None
        return balancer.pick(connect.client_id)

    def _waited(self, pending):
        connect, let, _ = self._waiting.pop(pending)
        slot = self._route(connect, waited=True)
        if slot is None:
            self._refuse(pending, CONNACK_SERVER_UNAVAILABLE, let.ticket)
        else:
            self._hand_off(pending, connect, let, slot)

    def _refuse(self, pending, code, ticket=None):
        """Answer ``pending``'s CONNECT with CONNACK ``code`` and close it, here."""
        if ticket is not None:
            ticket.release()
        try:
            pending.sock.send(encode_connack(False, code))
        except OSError:
            pass
        pending.sock.close()
        self.door.release(pending.host)

    def _dispatch_waiting(self):
        for pending, (connect, let, timer) in list(self._waiting.items()):
            slot = self._route(connect)
            if slot is not None:
                del self._waiting[pending]
                timer.cancel()
                self._hand_off(pending, connect, let, slot)

    def _started(self):
        """Every worker has come up once, or the wait for them is over."""
        if self._starting:
            self._starting = False
            up, workers = len(self.balancer.live), self._config.server.workers
            if up < workers:
                log.warn("mqttd tree: {up} of {workers} workers up after broker.idle_timeout;"
                         " the others' clients go to those meanwhile", up=up, workers=workers)
            if self._start_timer is not None and self._start_timer.active():
                self._start_timer.cancel()
            self._dispatch_waiting()

    def _hand_off(self, pending, connect, let, slot):
        conn_id = next(self._ids)
        client_id = let.client_id
        key = session_key(let.account, client_id)
        self._connections[conn_id] = (slot, pending.host, key, let.ticket)
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
        d.addErrback(lambda failure: self._release(conn_id))

    def _release(self, conn_id):
        entry = self._connections.pop(conn_id, None)
        if entry is None:
            return
        slot, host, key, ticket = entry
        if self._where.get(key, (None, None))[1] == conn_id:
            del self._where[key]
        if ticket is not None:
            ticket.release()
        self.balancer.closed(slot)
        self.door.release(host)

    def _kick(self, client_id, reason, account=None):
        """The gate refuses ``client_id`` of ``account`` now: its worker closes its
        connection."""
        where = self._where.get(session_key(account, client_id))
        channel = None if where is None else self._channels.get(where[0])
        if channel is not None:
            channel.send("kick", {"client_id": client_id, "reason": reason,
                                  "account": account})


@attrs.frozen
class _Let:
    """What the gate said of a connection it let in: the client id it has (``generated``
    here for an empty one), its account and the gate's ticket."""

    client_id: str
    account: str | None
    ticket: object
    generated: bool

