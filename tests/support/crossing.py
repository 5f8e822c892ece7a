"""A whole tree's cross-worker delivery in one test process, on a ``task.Clock``: N
brokers (``tests.support.broker.Harness``) each with its ``Crossing``, the master's
``Relay``, and between them the real channel ends (``MasterChannel``, ``WorkerChannel``)
on in-memory transports that pause their producer past a few kB, as a socket does.

Nothing moves until ``pump()`` carries the bytes, in order, until all is quiet; a slot in
``stalled_up`` (its worker -> master) or ``stalled_down`` (master -> its worker) is not
read, which is how a test makes a channel fill up.
"""
import attrs

from mqttd.edge.handoff import MasterChannel, WorkerChannel
from mqttd.metrics import Metrics
from mqttd.tree.crossing import Crossing
from mqttd.tree.relay import Relay
from tests.support.broker import Harness, SmallBufferTransport


@attrs.define
class Node:
    harness: Harness
    crossing: Crossing
    worker: WorkerChannel
    master: MasterChannel
    up: SmallBufferTransport  # the worker's writes, to the master
    down: SmallBufferTransport  # the master's writes, to the worker

    @property
    def broker(self):
        return self.harness.broker

    @property
    def metrics(self):
        return self.harness.broker.metrics


def _refuse(fd, preread, conn_id):
    raise AssertionError("no hand-offs in this tree")


class MiniTree:
    def __init__(self, workers=2, max_forward_bytes=1 << 20, buffer=4096,
                 retained_at_start=True):
        self.metrics = Metrics()  # the master's
        self.max_forward_bytes = max_forward_bytes
        self.buffer = buffer
        self.relay = Relay(self.metrics, max_forward_bytes, retained_at_start)
        self.nodes = {}
        self.said = []  # (slot, kind, payload) the master read from its workers
        self.stalled_up = set()
        self.stalled_down = set()
        for slot in range(1, workers + 1):
            self.start(slot)

    def _transport(self):
        transport = SmallBufferTransport()
        transport.limit = self.buffer
        return transport

    def start(self, slot, holding=False, **config):
        """A worker (again) in ``slot``: a fresh broker, as after a restart (``holding``:
        it is still loading; ``node.crossing.loaded()`` ends that)."""
        harness = Harness(**config)
        crossing = Crossing(harness.broker, slot, harness.broker.metrics,
                            self.max_forward_bytes, holding=holding)

        def to_worker(kind, payload):
            if kind == "interest":
                crossing.interest(payload)

        worker = WorkerChannel(_refuse, to_worker, on_forward=crossing.received,
                               on_drained=crossing.drained)
        up = self._transport()
        worker.makeConnection(up)
        relay = self.relay
        master = MasterChannel(lambda kind, payload: self._said(slot, kind, payload),
                               on_forward=lambda *frame: relay.forward_from(slot, *frame),
                               on_drained=lambda: relay.drained(slot, master))
        down = self._transport()
        master.makeConnection(down)
        relay.attach(slot, master)
        crossing.open(worker)
        node = self.nodes[slot] = Node(harness, crossing, worker, master, up, down)
        return node

    def _said(self, slot, kind, payload):
        self.said.append((slot, kind, payload))
        if kind == "interest":
            self.relay.interest_from(slot, payload)
        elif kind == "loaded":
            self.relay.loaded(slot)

    def kill(self, slot):
        """The worker dies: the master forgets it, as ``Master._worker_gone`` does."""
        self.relay.detach(slot)
        del self.nodes[slot]

    def pump(self):
        moved = True
        while moved:
            moved = False
            for slot, node in list(self.nodes.items()):
                if slot not in self.stalled_up:
                    moved |= self._carry(node.up, node.master)
                if slot not in self.stalled_down and slot in self.nodes:
                    moved |= self._carry(node.down, node.worker)

    @staticmethod
    def _carry(transport, reader):
        data = transport.value()
        if not data:
            return False
        transport.clear()
        reader.dataReceived(data)
        transport.drained()
        return True

    def interest_said(self, slot):
        return [payload for s, kind, payload in self.said if s == slot and kind == "interest"]
