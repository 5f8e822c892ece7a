"""The broker's unit-test harness: a Broker on a ``task.Clock``, connections on
``StringTransport``, and the broker's output parsed back with ``Parser(server=False)``.

Shared by every module that drives the broker through its protocol (routing, ingest,
interleavings, TLS), so it is here rather than in one of them. ``ManualStore`` and
``ManualAuthenticator`` answer only when the test says so, to pin any ordering;
``SubmittingStore`` is the Deferred-free seam whose groups the test settles, and
``SmallBufferTransport`` a socket that fills up.
"""
import attrs
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.codec import Connack, Connect, Disconnect, Parser, Publish, Subscribe, encode
from mqttd.config import AuthConfig, BrokerConfig
from mqttd.store.sink import IMessageSink, ISubmittingMessageSink
from mqttd.store.memory import InMemorySink


@implementer(IMessageSink)
class ManualStore:
    """A store whose Deferreds the test fires, in any order."""

    def __init__(self):
        self.calls = []  # [(message, deferred)]

    def store(self, message):
        d = Deferred()
        self.calls.append((message, d))
        return d

    @property
    def messages(self):
        return [m for m, _ in self.calls]

    def succeed(self, index):
        self.calls[index][1].callback(None)

    def fail(self, index):
        self.calls[index][1].errback(Failure(RuntimeError("disk on fire")))


class ManualAuthenticator:
    """Authentication that answers only when the test says so."""

    def __init__(self):
        self.pending = []

    def authenticate(self, client_id, username, password, peer=None):
        d = Deferred()
        self.pending.append(d)
        return d


class Client:
    """One test connection: feed packets in, read parsed packets out."""

    _ports = iter(range(40000, 60000))

    def __init__(self, harness, transport_class=StringTransport, address="192.0.2.7"):
        self.harness = harness
        addr = IPv4Address("TCP", address, next(self._ports))
        self.protocol = harness.factory.buildProtocol(addr)
        self.transport = transport_class(peerAddress=addr)
        self.protocol.makeConnection(self.transport)
        self._parser = Parser(server=False)
        self._unread = []
        self.lost = False

    def send(self, *packets, bytewise=False):
        data = b"".join(p if isinstance(p, bytes) else encode(p) for p in packets)
        if bytewise:
            for i in range(len(data)):
                self.protocol.dataReceived(data[i:i + 1])
        else:
            self.protocol.dataReceived(data)

    def received(self):
        """Packets written by the broker since the last call."""
        data = self.transport.value()
        self.transport.clear()
        packets = self._unread + self._parser.feed(data)
        self._unread = []
        return packets

    def connect(self, client_id="c1", clean=True, keepalive=0, will=None, username=None,
                password=None):
        self.send(Connect(client_id, clean, keepalive, username, password, will))
        packets = self.received()
        assert packets and isinstance(packets[0], Connack), packets
        self._unread = packets[1:]  # redelivery after CONNACK stays readable
        return packets[0]

    @property
    def closed(self):
        return self.transport.disconnecting

    @property
    def paused(self):
        return self.transport.producerState == "paused"

    def lose(self):
        """The socket goes away (also what the reactor does after loseConnection)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def disconnect(self):
        self.send(Disconnect())
        assert self.closed
        self.lose()


class Harness:
    def __init__(self, store=None, authenticator=None, acl=None, static_users=(), **config):
        self.clock = task.Clock()
        self.config = attrs.evolve(BrokerConfig(), **config)
        self.store = store if store is not None else InMemorySink()
        self.authenticator = authenticator or StaticAuthenticator(
            AuthConfig(allow_anonymous=True))
        self.broker = Broker(self.clock, self.config, self.store, self.authenticator, acl=acl,
                             static_users=static_users)
        self.factory = MQTTServerFactory(self.broker, self.clock)

    def client(self, client_id=None, **kw):
        c = Client(self)
        if client_id is not None:
            connack = c.connect(client_id, **kw)
            assert connack.return_code == 0, connack
        return c

    def subscriber(self, topic_filter, qos=0, client_id="sub"):
        """A connected client subscribed to ``topic_filter``, its SUBACK already read."""
        c = self.client(client_id)
        c.send(Subscribe(1, ((topic_filter, qos),)))
        c.received()
        return c


def pub(topic, payload=b"x", qos=0, retain=False, pid=None, dup=False):
    if qos and pid is None:
        pid = 1
    return Publish(topic, payload, qos, retain, dup, pid)


def publishes(packets):
    return [p for p in packets if isinstance(p, Publish)]


def two_for_a_subscriber(store, first=b"a", second=b"b"):
    """A broker over ``store``, a subscriber to "t", and a client "pub" that sent
    ``first`` and ``second`` there at QoS 1 (ids 1, 2): (subscriber, publisher)."""
    h = Harness(store=store)
    sub = h.subscriber("t")
    p = h.client("pub")
    p.send(pub("t", first, qos=1, pid=1), pub("t", second, qos=1, pid=2))
    return sub, p


def resent_after_failure(store, fail):
    """A persistent "dev" on a broker over ``store`` sent QoS 2 id 7, ``fail()`` refused
    it (closing the connection), and "dev" came back and sent it again (DUP): the new
    connection, for the tests that it is stored again, not answered as a duplicate."""
    h = Harness(store=store)
    c = h.client("dev", clean=False)
    c.send(pub("t", b"v", qos=2, pid=7))
    fail()
    c.lose()
    again = h.client("dev", clean=False)
    again.send(pub("t", b"v", qos=2, pid=7, dup=True))
    return again


def mixed_publishes(store):
    """A client of a broker on ``store`` that sent QoS 1, 0, 2, 1 (ids 1, -, 2, 3): store
    entries 0..3, acks Puback(1), Pubrec(2), Puback(3) in that order."""
    c = Harness(store=store).client("c")
    c.send(pub("t", qos=1, pid=1), pub("t", qos=0), pub("t", qos=2, pid=2),
           pub("t", qos=1, pid=3))
    return c


@implementer(ISubmittingMessageSink)
class SubmittingStore:
    """A store with the Deferred-free ``submit``: the test settles groups of tokens."""

    def __init__(self):
        self.calls = []  # [(message, notify, token)]

    def store(self, message):  # pragma: no cover - the broker must use submit
        raise AssertionError("store() used although submit() is provided")

    def submit(self, message, notify, token):
        self.calls.append((message, notify, token))

    @property
    def messages(self):
        return [m for m, _, _ in self.calls]

    def settle(self, indexes, failure=None):
        """Settle the calls at ``indexes`` (one submitter) with one notify call."""
        notify = self.calls[indexes[0]][1]
        notify([self.calls[i][2] for i in indexes], failure)


def count_writes(client):
    writes = []
    write = client.transport.write

    def counting(data):
        writes.append(data)
        write(data)
    client.transport.write = counting
    return writes


class SmallBufferTransport(StringTransport):
    """Pauses its producer once more than 4 kB wait, as Twisted's TCP transport does
    past 64 kB; ``drained()`` is the reader catching up (the transport resumes it)."""

    limit = 4096
    full = False

    def write(self, data):
        super().write(data)
        if not self.full and self.producer is not None and len(self.value()) > self.limit:
            self.full = True
            self.producer.pauseProducing()

    def drained(self):
        if self.full:
            self.full = False
            self.producer.resumeProducing()
