"""A broker worker: the MQTT broker of DESIGN.md's tree, fed sockets by the master.

The master hands each client's socket, with the bytes it already read (the CONNECT),
over the UNIX socket inherited as ``channel_fd``; this process adopts it as if it had
accepted it, and says "closed" when it goes, so the master's door counts it free.
Messages go to the ingest tier's URL with the tree's secret (or to ``webhook.url``).
With two workers or more, the same channel carries subscription interest and the
publishes other workers want (``mqttd.tree.crossing``).
"""
from twisted.application.service import Service
from twisted.logger import Logger

from mqttd.broker.admission import AuthResult
from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.protocol import MQTTServerFactory, MQTTServerProtocol
from mqttd.edge.adopt import adopt_into
from mqttd.edge.handoff import WorkerChannel, open_channel
from mqttd.manage.questions import Answerer
from mqttd.manage.reporter import MetricsReporter
from mqttd.manage.trace_tree import worker_trace
from mqttd.manage.view import clients_question
from mqttd.manage.sys_topics import publish_sys
from mqttd.manage.watch import gap_details, watch_broker
from mqttd.metrics import Metrics
from mqttd.reload import ACL_MESSAGE, acl_from_payload
from mqttd.service import PersistenceService, broker_stop, build_broker, webhook_sink
from mqttd.stopping import SequentialStop
from mqttd.tree.crossing import Crossing
from mqttd.tree.relay_wire import frame_limit

log = Logger()


class _ReportingProtocol(MQTTServerProtocol):
    """A broker connection that tells the master when it is gone."""

    conn_id = None
    on_gone = None

    def connectionLost(self, reason=None):
        super().connectionLost(reason)
        if self.on_gone is not None:
            on_gone, self.on_gone = self.on_gone, None
            on_gone(self.conn_id)


class _WorkerFactory(MQTTServerFactory):
    def buildProtocol(self, addr):
        protocol = _ReportingProtocol(self.broker, self.clock)
        protocol.factory = self
        return protocol


class _Channel(Service):
    """The master's channel: adopts handed-off sockets; ends this worker when lost."""

    def __init__(self, reactor, fd, factory, crossing=None, max_forward_body=None,
                 asked=None):
        self.trace = None  # its WorkerTrace (the trace rules of the master), if on
        self._reactor = reactor
        self._asked = asked  # the master's questions (mqttd.manage.questions.Answerer)
        self._fd = fd
        self._factory = factory
        self._crossing = crossing
        self._max_forward_body = max_forward_body
        self.channel = None

    def startService(self):
        super().startService()
        self._factory.doStart()  # adoptStreamConnection never starts the factory
        crossing = self._crossing
        forwarding = {} if crossing is None else {
            "on_forward": crossing.received, "on_drained": crossing.drained,
            "max_forward_body": self._max_forward_body}
        self.channel = WorkerChannel(self._adopt, self._message, **forwarding)
        open_channel(self._reactor, self._fd, self.channel)
        self.channel.when_lost().addBoth(self._lost)
        if crossing is not None:
            crossing.open(self.channel)
        self.channel.send("ready", {})

    def _adopt(self, fd, preread, conn_id, peer=None, decided=None):
        # Returns before any "closed" for this connection can be sent: the master reads
        # its adoption ack first (a close is reported from a later reactor turn).
        # ``peer``: the client's address when the master relays it (TLS). ``decided``:
        # (account, client id made for an empty one) from the master's gate, which this
        # worker trusts: it has no accounts to ask.
        prepare = None
        if decided is not None:
            verdict = AuthResult(0, account=decided[0], client_id=decided[1])

            def prepare(protocol):
                protocol.decided = verdict
        protocol = adopt_into(self._reactor, self._factory, fd, preread, peer, prepare)
        protocol.conn_id = conn_id
        protocol.on_gone = self._gone

    def _gone(self, conn_id):
        if self.channel is not None:
            self.channel.send("closed", {"conn_id": conn_id})

    def _message(self, kind, payload):
        if kind == "taken":
            # "account": the client's (the gate's answer; absent: none).
            self._factory.broker.taken_elsewhere(payload["client_id"], payload.get("account"))
        elif kind == "kick":
            self._factory.broker.kick(payload["client_id"], payload.get("reason", "kicked"),
                                      payload.get("account"))
        elif kind == "max_connections":  # a SIGHUP the master applied (mqttd.reload)
            self._factory.broker.reload_max_connections(payload["max_connections"])
        elif kind == "interest" and self._crossing is not None:
            self._crossing.interest(payload)
        elif kind == "sys":  # the $SYS/broker values, every manage.sys_interval
            publish_sys(self._factory.broker, payload.get("values"))
        elif kind == ACL_MESSAGE:  # SIGHUP's new auth.acl, for the live connections too
            try:
                rules = acl_from_payload(payload)
            except (KeyError, TypeError, ValueError) as e:
                log.error("worker: ACL not reloaded, a bad message from the master: "
                          "{error!r}", error=e)
                return
            self._factory.broker.tenancy.reload(rules)
        elif kind == "trace_rules" and self.trace is not None:
            self.trace.rules(payload)
        elif kind == "ask" and self._asked is not None:
            self._asked(payload)
        else:
            log.warn("worker: unknown message {kind!r} from the master", kind=kind)

    def _lost(self, reason):
        if self._crossing is not None:
            self._crossing.lost()  # acks waiting for the master's echo go now
        if self.running:
            log.warn("worker: the master's channel is gone; stopping")
            self._reactor.stop()
        return None


def build_worker(config, reactor, brief):
    root = SequentialStop()
    root.metrics = metrics = Metrics()
    url = config.webhook.url or brief["ingest_url"]
    secret = config.webhook.secret if config.webhook.url else config.ingest.secret
    sink, pool = webhook_sink(config, reactor, metrics, url, secret)
    # Its persistent sessions in DATA_DIR/sessions-<slot>.db: the slot is stable across
    # restarts, and so are the client ids that reach it (mqttd.edge.balancer).
    broker = build_broker(reactor, config, sink, metrics, brief["slot"],
                          StaticAuthenticator(config.auth))
    gaps = watch_broker(config, reactor, broker, brief["name"])  # its devices' silences
    factory = _WorkerFactory(broker, reactor)
    crossing = None
    if config.server.workers >= 2:
        # Holds what other workers send until the broker has loaded what it kept: a
        # retained value sent meanwhile is newer than the one it reads back.
        crossing = Crossing(broker, brief["slot"], metrics, config.server.max_forward_bytes,
                            holding=True)
    # The master's questions (the manhole's clients(), trace()): root.answers.handle.
    root.answers = answers = Answerer(lambda kind, payload: link.channel is not None
                                      and link.channel.send(kind, payload))
    answers.handle("clients", clients_question(broker, brief["name"], broker.static_users))
    # Stopped last: the clean stop's "closed" reports still reach the master.
    link = _Channel(reactor, brief["channel_fd"], factory, crossing,
                    frame_limit(config.broker.max_packet_size), answers.asked)
    link.setServiceParent(root)
    # The per-client trace (manage.trace_file): this worker's clients, from their CONNECT.
    link.trace = worker_trace(reactor, config, metrics, brief["name"])
    if link.trace is not None:
        broker.tracer = link.trace.tracer
        answers.handle("trace", link.trace.recent)  # the master's recent_events
        # Its last lines (the clean stop's disconnects) written before the process exits.
        reactor.addSystemEventTrigger("after", "shutdown", link.trace.close)
    # Its registry to the master every second (after "ready"); a last one after the
    # clean stop, which is stopped before it.
    MetricsReporter(reactor, metrics, lambda payload: link.channel is not None
                    and link.channel.send("metrics", payload),
                    details=lambda: gap_details(gaps)).setServiceParent(root)
    on_loaded = None if crossing is None else crossing.loaded
    # Saved after the clean stop.
    PersistenceService(reactor, broker, on_loaded=on_loaded).setServiceParent(root)
    broker_stop(reactor, config, broker, sink, pool).setServiceParent(root)
    root.broker = broker
    return root
