"""For the hand-off channel's tests: a MasterChannel and a WorkerChannel joined by a
real socketpair in the trial reactor (``ChannelCase.channels``), real TCP pairs on
127.0.0.1, protocols that record what they read, and a worker ``adopt`` that holds
hand-offs until the test lets them go. Every wait is on a Deferred, bounded by
``within``; everything opened is closed when the test ends (trial checks the reactor)."""
import os
import socket

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from mqttd.edge.adopt import adopt_into
from mqttd.edge.handoff import MasterChannel, WorkerChannel, channel_socketpair, open_channel
from mqttd.edge.handoff_wire import FrameReader, decode
from tests.support.loopback import within

WAIT = 10  # seconds: only a broken channel waits this long


def read_frames(stream, reader=None, chunk=1):
    """(reader, the values of the frames in ``stream``), fed ``chunk`` bytes at a time."""
    reader = reader or FrameReader()
    frames = []
    for i in range(0, len(stream), chunk):
        frames += reader.feed(stream[i:i + chunk])
    return reader, [decode(t, body) for t, body in frames]


class Recorder(protocol.Protocol):
    """Records what it reads; ``received(n)`` fires once ``n`` bytes have come."""

    def __init__(self):
        self.data = b""
        self.lost = defer.Deferred()
        self._waits = []

    def received(self, count):
        waiting = defer.Deferred()
        self._waits.append((count, waiting))
        self._check()
        return within(waiting, WAIT)

    def dataReceived(self, data):
        self.data += data
        self._check()

    def _check(self):
        for count, waiting in list(self._waits):
            if len(self.data) >= count:
                self._waits.remove((count, waiting))
                waiting.callback(self.data)

    def connectionLost(self, reason):
        self.lost.callback(reason.value)  # the exception, not a Failure: no errback


class Echo(Recorder):
    def dataReceived(self, data):
        super().dataReceived(data)
        self.transport.write(data)


class Inbox(list):
    """An end's ``on_message``: the (kind, payload) pairs it received, in order;
    ``holding(n)`` fires once there are ``n``."""

    def __init__(self):
        super().__init__()
        self._waits = []

    def __call__(self, kind, payload):
        self.append((kind, payload))
        for count, waiting in list(self._waits):
            if len(self) >= count:
                self._waits.remove((count, waiting))
                waiting.callback(None)

    def holding(self, count):
        if len(self) >= count:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waits.append((count, waiting))
        return within(waiting, WAIT)


class Held:
    """A worker's ``adopt`` that holds every hand-off until the test releases it."""

    def __init__(self):
        self.held = []  # (conn id, fd, Deferred)
        self.opened = False

    def __call__(self, fd, preread, conn_id):
        if self.opened:
            os.close(fd)
            return None
        done = defer.Deferred()
        self.held.append((conn_id, fd, done))
        return done

    def open(self):
        """Release what is held and adopt at once from now on."""
        self.opened = True
        while self.held:
            self.release()

    def release(self, index=0, error=None):
        conn_id, fd, done = self.held.pop(index)
        os.close(fd)
        done.errback(error) if error else done.callback(None)

    def close_all(self):
        while self.held:
            os.close(self.held.pop()[1])


class ChannelCase(unittest.TestCase):
    def setUp(self):
        self.adopted = {}  # conn id -> the worker's protocol
        self.to_master, self.to_worker = Inbox(), Inbox()

    def channels(self, adopt=None, factory=None, **master_args):
        """A MasterChannel and a WorkerChannel joined by a socketpair; by default the
        worker adopts into ``factory`` (Recorder) and remembers each protocol."""
        if adopt is None:
            factory = factory or protocol.Factory.forProtocol(Recorder)

            def adopt(fd, preread, conn_id):
                built = adopt_into(reactor, factory, fd, preread)
                self.adopted[conn_id] = built
                self.addCleanup(self.abort, built)
        master_end, worker_end = channel_socketpair()
        master = open_channel(reactor, master_end, MasterChannel(self.to_master, **master_args))
        worker = open_channel(reactor, worker_end, WorkerChannel(adopt, self.to_worker))
        self.addCleanup(self.shut, worker)
        self.addCleanup(self.shut, master)
        return master, worker

    def raw_peer(self, channel):
        """``channel`` on one end of a socketpair; the other end, raw, for the test."""
        ours, theirs = channel_socketpair()
        open_channel(reactor, ours, channel)
        self.addCleanup(self.shut, channel)
        self.addCleanup(theirs.close)
        return theirs

    def shut(self, channel):
        if not channel.lost:
            channel.close()
        return within(channel.when_lost(), WAIT)

    def abort(self, proto):
        if proto.transport is not None and not proto.lost.called:
            proto.transport.abortConnection()
        return within(proto.lost, WAIT)

    def tcp_pair(self):
        """(client, server): a connected TCP pair on 127.0.0.1, the server end non-blocking
        as the master's accept loop leaves it."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)
        self.addCleanup(client.close)
        self.addCleanup(server.close)
        return client, server

    def twisted_client(self, client):
        """The raw client socket driven by a Recorder, to wait on what it reads."""
        recorder = Recorder()
        client.setblocking(False)
        reactor.adoptStreamConnection(
            client.fileno(), client.family, protocol.Factory.forProtocol(lambda: recorder))
        client.close()
        self.addCleanup(self.abort, recorder)
        return recorder
