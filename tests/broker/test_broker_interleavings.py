"""One device, many connections, a store that commits in any order: the promise holds.

A seeded random walk (deterministic: ``random.Random(seed)``) drives one client id
through publishes at QoS 0/1/2 with a few reused packet ids, drops, DISCONNECTs,
takeovers, clean-session connects and wills, while a ManualStore commits (or fails,
15%) the submitted messages in random order; a compliant client retransmits on every
reconnect. At the end everything is committed and every check below must hold:

* no PUBACK/PUBREC before the message it acknowledges is committed;
* every committed message routed exactly once (wills aside), a QoS 2 one stored once;
* one topic's messages routed in the order they were sent, per QoS, wills included (a
  will is "sent" when its connection drops), and the retained value the last one sent
  (checked when no commit failed and no session was reset);
* nothing left behind: every connection's FIFO empty, no QoS 2 record, nothing unrouted.

It found the cross-connection ordering and QoS 2 hand-over bugs fixed in session 5.
"""
import itertools
import random
from collections import Counter, OrderedDict

from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.codec import Disconnect, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Will
from tests.support.broker import Client, Harness, ManualStore


class Broken(AssertionError):
    """A check of the promise failed."""


class Device:
    """The world of one run: the broker, its store, a subscriber, and a device."""

    def __init__(self, rng, max_inflight=4, resets=True, failures=True, wills=True,
                 ids=(1, 2, 3), topics=("t/x",), qoss=(0, 1, 2, 2), will_topic="w"):
        self.rng = rng
        self.resets, self.failures, self.wills = resets, failures, wills
        self.will_topic = will_topic
        self.ids, self.topics, self.qoss = ids, topics, qoss
        self.store = ManualStore()
        self.h = Harness(store=self.store, max_inflight=max_inflight)
        sub = self.h.client("sub")
        sub.send(Subscribe(1, (("#", 0),)))
        self.routed = []
        route = self.h.broker.route

        def recording_route(message):
            self.routed.append(message)
            route(message)

        self.h.broker.route = recording_route
        make_message = self.h.broker.make_message

        def noting_wills(client_id, username, topic, payload, *rest):
            if payload.startswith(b"will"):  # made when its connection drops: "sent" now
                self.sent.append((payload, rest[0], topic))
                self.sends.append((payload, topic))
            return make_message(client_id, username, topic, payload, *rest)

        self.h.broker.make_message = noting_wills
        self.settled = {}  # store call index -> committed?
        self.conn = None
        self.conns = []
        self.unacked = OrderedDict()  # packet id -> [qos, payload, "pub"|"rel", topic]
        self.sent = []  # (payload, qos, topic) in first-send order
        self.sends = []  # (payload, topic) of every send, retransmissions too
        self.counter = 0
        self.last_clean = False
        self.failed = self.reset = False

    # -- the device ------------------------------------------------------------------

    def step(self):
        r = self.rng.random()
        live = self.conn is not None and not self.conn.closed and not self.conn.lost
        if not live:
            if r < 0.5:
                self.connect(clean=self.resets and self.rng.random() < 0.1)
            else:
                self.settle()
        elif r < 0.35:
            self.publish()
        elif r < 0.5:
            self.conn.lose()
        elif r < 0.55:
            self.conn.send(Disconnect())
            self.conn.lose()
        elif r < 0.62:
            self.connect(clean=self.resets and self.rng.random() < 0.1)  # a takeover
        else:
            self.settle()

    def connect(self, clean):
        client = Client(self.h)
        will = None
        if self.wills and self.rng.random() < 0.3:
            self.counter += 1
            will = Will(self.will_topic, b"will%d" % self.counter, 1,
                        retain=self.will_topic != "w")
        client.connect("dev", clean=clean, will=will)
        if clean or self.last_clean:
            self.unacked.clear()
            self.reset = True
        old, self.conn, self.last_clean = self.conn, client, clean
        self.conns.append(client)
        if old is not None and not old.lost and old.closed and self.rng.random() < 0.5:
            old.lose()
        if not clean:  # retransmit what is unacknowledged [MQTT-4.4.0-1]
            again = [Publish(topic, payload, qos, True, True, pid) if phase == "pub"
                     else Pubrel(pid)
                     for pid, (qos, payload, phase, topic) in self.unacked.items()]
            if again:
                self.sends += [(p.payload, p.topic) for p in again if type(p) is Publish]
                client.send(*again)
        self.read()

    def publish(self):
        free = [pid for pid in self.ids if pid not in self.unacked]
        qos = self.rng.choice(self.qoss)
        if qos and not free:
            return
        self.counter += 1
        payload = b"m%d" % self.counter
        topic = self.rng.choice(self.topics)
        pid = None
        if qos:
            pid = self.rng.choice(free)
            self.unacked[pid] = [qos, payload, "pub", topic]
        self.sent.append((payload, qos, topic))
        self.sends.append((payload, topic))
        self.conn.send(Publish(topic, payload, qos, True, False, pid))
        self.read()

    def read(self):
        """The device reads what the broker sent and answers PUBRECs."""
        conn = self.conn
        while conn is not None and not conn.closed and not conn.lost:
            answers = []
            for packet in conn.received():
                entry = self.unacked.get(getattr(packet, "packet_id", None))
                if entry is None:
                    continue
                if type(packet) is Puback and entry[0] == 1 and entry[2] == "pub":
                    self.check_committed(entry[1], packet)
                    del self.unacked[packet.packet_id]
                elif type(packet) is Pubrec and entry[0] == 2 and entry[2] == "pub":
                    self.check_committed(entry[1], packet)
                    entry[2] = "rel"
                    answers.append(Pubrel(packet.packet_id))
                elif type(packet) is Pubcomp and entry[2] == "rel":
                    del self.unacked[packet.packet_id]
            if not answers:
                return
            conn.send(*answers)

    # -- the store -------------------------------------------------------------------

    def settle(self, ok=None):
        open_calls = [i for i in range(len(self.store.calls)) if i not in self.settled]
        if not open_calls:
            return False
        index = self.rng.choice(open_calls)
        if ok is None:
            ok = not (self.failures and self.rng.random() < 0.15)
        self.settled[index] = ok
        d = self.store.calls[index][1]
        if ok:
            d.callback(None)
        else:
            self.failed = True
            d.errback(Failure(RuntimeError("disk on fire")))
        if isinstance(d.result, Failure):
            raise Broken(f"an exception escaped the store's callback: {d.result.getTraceback()}")
        self.read()
        return True

    def finish(self):
        """Let the device come back until all it sent is acknowledged, commit the rest."""
        for attempt in range(30):
            while self.settle(ok=None if attempt < 10 else True):
                pass
            if not self.unacked:
                break
            if self.conn is not None and not self.conn.lost:
                self.conn.lose()
            self.connect(clean=False)
        while self.settle(ok=True):
            pass
        for conn in self.conns:
            if not conn.lost:
                conn.lose()
        while self.settle(ok=True):  # the last connection's will
            pass

    # -- the checks ------------------------------------------------------------------

    def committed(self):
        return [self.store.calls[i][0] for i, ok in self.settled.items() if ok]

    def check_committed(self, payload, ack):
        if payload not in {m.payload for m in self.committed()}:
            raise Broken(f"{ack} before {payload!r} was committed")

    def check_end(self):
        broker = self.h.broker
        for n, conn in enumerate(self.conns):
            if conn.protocol.inbound:
                raise Broken(f"connection {n}'s FIFO is stuck: {conn.protocol.inbound}")
        session = broker.sessions.get("dev")
        if session is not None and session.qos2_pending:
            raise Broken(f"QoS 2 records left: {session.qos2_pending}")
        if broker.inbound:
            raise Broken(f"left behind: unrouted {broker.inbound}")
        stored = sorted(m.key for m in self.committed() if m.topic != "w")
        routed = sorted(m.key for m in self.routed if m.topic != "w")
        if stored != routed:
            raise Broken(f"committed and routed differ:\n{stored}\n{routed}")
        qos2 = {payload for payload, qos, _ in self.sent if qos == 2}
        for kind, count in (("committed", Counter(m.payload for m in self.committed())),
                            ("routed", Counter(m.payload for m in self.routed))):
            twice = [p for p in qos2 if count[p] > 1]
            if twice:
                raise Broken(f"QoS 2 {twice} {kind} more than once")
        if self.failed or self.reset:
            return  # a failed commit or a reset session may legitimately drop messages
        for topic in self.topics:
            for qos in (0, 1, 2):
                seen = []
                for m in self.routed:
                    if m.topic == topic and m.qos == qos and m.payload not in seen:
                        seen.append(m.payload)
                want = [p for p, q, t in self.sent if q == qos and t == topic and p in seen]
                if seen != want:
                    raise Broken(f"QoS {qos} on {topic} routed {seen}, sent {want}")
            if len(set(self.qoss)) == 1:
                if self.qoss == (2,):  # exactly once: a retransmission is not routed again
                    routed = {m.payload for m in self.routed}
                    last = [p for p, _, t in self.sent if t == topic and p in routed]
                else:  # every send is stored and routed, retransmissions too
                    last = [p for p, t in self.sends if t == topic]
                retained = broker.retained.get(topic)
                if last and (retained is None or retained.payload != last[-1]):
                    raise Broken(f"retained {topic} is {retained and retained.payload}, "
                                 f"last sent {last[-1]}")


WORLDS = (
    {},
    {"failures": False, "resets": False},
    {"max_inflight": 2},
    {"max_inflight": 1, "ids": (1, 2)},
    {"qoss": (2,), "failures": False, "resets": False},
    {"qoss": (2,), "failures": False, "resets": False, "max_inflight": 2, "topics": ("a", "b")},
    {"qoss": (1,), "failures": False, "resets": False},
    {"qoss": (0,), "failures": False, "resets": False},
    {"qoss": (2,)},
    {"qoss": (1, 2), "ids": (1, 2, 3, 4, 5)},
    # wills on the devices' own topic, retained: routed in order with its messages
    {"qoss": (1,), "failures": False, "resets": False, "will_topic": "t/x"},
    {"qoss": (1,), "failures": False, "resets": False, "will_topic": "t/x", "max_inflight": 1},
)


class InterleavingTests(unittest.TestCase):
    SEEDS = range(300)

    def test_the_promise_holds_in_every_interleaving(self):
        Client._ports = itertools.cycle(range(40000, 60000))  # many connections per run
        for world in WORLDS:
            for seed in self.SEEDS:
                device = Device(random.Random(seed), **world)
                try:
                    for _ in range(40):
                        device.step()
                    device.finish()
                    device.check_end()
                except Broken as e:
                    self.fail(f"seed {seed}, {world}: {e}")
        self.flushLoggedErrors(RuntimeError)
