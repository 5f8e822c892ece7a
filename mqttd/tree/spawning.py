"""Building and starting the tree's children: their argv, their brief, their fds.

The master decides which children there are (``server.workers`` workers, one ingest
child) and the supervisor when to (re)start them; this module does the starting itself,
which is the same plumbing for every child: the interpreter's own argv
(``proctitle.child_argv``), stdin/stdout/stderr as pipes, extra sockets mapped to fixed
fds, and the brief (the role, the configuration document, which fd is what) written as
JSON on stdin and closed. Kept apart from the master so the master reads as the door and
the routing of connections, not as process plumbing.

A worker's fd 3 is its channel (``edge.handoff``): its master end is opened here, wired
to the relay, and given to the master (``on_channel``) before the spawn returns. The
ingest child gets the listening socket the master bound (``bind_ingest``: bound before
any child starts, so the workers' URL is fixed) as fd 3 and its channel as fd 4.
"""
import json
import socket

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger

from mqttd.config import config_document
from mqttd.edge.handoff import MasterChannel, channel_socketpair, open_channel
from mqttd.edge.sockets import bind_listener
from mqttd.ingest.service import not_loopback
from mqttd.ingest.wire import PATH
from mqttd.tree.ingest_link import IngestLink
from mqttd.tree.proctitle import child_argv, process_name
from mqttd.tree.relay_wire import frame_limit

__all__ = ["Spawner", "bind_ingest"]

log = Logger()


def bind_ingest(ingest):
    """Bind ``ingest.listen`` (``ingest``: the [ingest] section) for the ingest child:
    returns (socket, the workers' URL).

    TCP only (the workers post to it), and on loopback unless ``ingest.allow_remote``;
    either refusal stops start-up with one line."""
    sock = bind_listener("ingest.listen", ingest.listen)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.close()
        raise SystemExit("mqttd: configuration error: ingest.listen: the workers reach "
                         "the built-in ingest tier over TCP")
    if not ingest.allow_remote:
        host, port = sock.getsockname()[:2]
        kind = IPv6Address if sock.family == socket.AF_INET6 else IPv4Address
        refusal = not_loopback(kind("TCP", host, port))
        if refusal is not None:
            sock.close()
            raise SystemExit(f"mqttd: configuration error: ingest.listen: {refusal}")
    url = _url(sock.getsockname())
    log.info("ingest webhook listening on {url}", url=url)
    return sock, url


def _url(address):
    host, port = address[0], address[1]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{PATH.decode('ascii')}"


class Spawner:
    """Starters for the supervisor: each ``start(protocol)`` spawns one run of a child
    and returns its process transport.

    ``config`` is the configuration every child is briefed with (``reconfigure``
    changes it for the runs started later); ``relay`` carries the publishes that cross
    between workers; ``max_packet_size`` bounds a forward."""

    def __init__(self, reactor, config, tree_metrics, relay, max_packet_size):
        self._reactor = reactor
        self._document = config_document(config)
        self._tree_metrics = tree_metrics
        self._relay = relay
        self._max_forward_body = frame_limit(max_packet_size)

    def reconfigure(self, config):
        """Brief the children started from now on with ``config`` (a SIGHUP's reload
        applied), so a worker restarted later starts with it too."""
        self._document = config_document(config)

    def spawn(self, protocol, brief, fds):
        argv = child_argv(brief["name"])
        child_fds = {0: "w", 1: "r", 2: "r"}
        child_fds.update(fds)
        # env=None: the master's environment (Twisted's default, {}, would empty it).
        transport = self._reactor.spawnProcess(protocol, argv[0], argv, env=None,
                                               childFDs=child_fds)
        transport.writeToChild(0, json.dumps(brief).encode("utf-8"))
        transport.closeStdin()
        return transport

    def add_ingest(self, ingest, supervisor):
        """Bind the ingest child's socket and put the child under ``supervisor``:
        returns (its ``IngestLink``, the URL the workers post to)."""
        sock, url = bind_ingest(ingest)
        name = process_name("ingest")
        link = IngestLink(self._reactor, self._tree_metrics, name)
        supervisor.add(name, self.ingest_starter(sock, link),
                       on_exit=lambda name, reason: link.gone())
        return link, url

    def add_worker(self, supervisor, slot, ingest_url, on_message, on_channel, on_gone):
        """Put worker ``slot`` under ``supervisor`` (``worker_starter``); ``on_gone(slot)``
        at each exit of a run."""
        supervisor.add(process_name("worker", slot),
                       self.worker_starter(slot, ingest_url, on_message, on_channel),
                       on_exit=lambda name, reason: on_gone(slot))

    def worker_starter(self, slot, ingest_url, on_message, on_channel):
        """Worker ``slot``: its messages go to ``on_message(slot, kind, payload)``, and
        each run's new channel to ``on_channel(slot, channel)`` once it is open."""
        name = process_name("worker", slot)

        def start(protocol):
            ours, theirs = channel_socketpair()
            self._tree_metrics.started(name)
            brief = {"role": "worker", "slot": slot, "name": name,
                     "config": self._document, "ingest_url": ingest_url, "channel_fd": 3}
            try:
                transport = self.spawn(protocol, brief, {3: theirs.fileno()})
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            relay = self._relay
            channel = MasterChannel(
                on_message=lambda kind, payload: on_message(slot, kind, payload),
                on_forward=lambda *frame: relay.forward_from(slot, *frame),
                on_drained=lambda: relay.drained(slot, channel),
                max_forward_body=self._max_forward_body)
            open_channel(self._reactor, ours, channel)
            on_channel(slot, channel)
            return transport
        return start

    def ingest_starter(self, sock, link):
        """The ingest child on ``sock`` (from ``bind_ingest``), its channel by ``link``
        (an ``IngestLink``, which opens one for each run)."""
        def start(protocol):
            brief = {"role": "ingest", "name": process_name("ingest"), "config": self._document,
                     "listen_fd": 3, "channel_fd": 4,
                     "listen_family": "inet6" if sock.family == socket.AF_INET6 else "inet"}
            theirs = link.open()
            try:
                return self.spawn(protocol, brief, {3: sock.fileno(), 4: theirs.fileno()})
            finally:
                theirs.close()
        return start
