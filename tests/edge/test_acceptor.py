"""The master's accept loop: the door judges each peer before any read; refused sockets
are reset, admitted ones handed over unread.

Real sockets on 127.0.0.1 (a blocking connect returns once the kernel has queued the
connection, so doRead finds it); the reactor is a MemoryReactorClock.
"""
import errno
import socket

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.edge.acceptor import ACCEPT_BATCH, RawAcceptor
from mqttd.edge.door import Door
from mqttd.metrics import Metrics


@attrs.frozen
class Limits:
    max_conn_per_ip: int = 0
    max_conn_rate_per_ip: float = 0.0
    conn_rate_burst: int = 1
    allowlist: tuple = ()
    banned: tuple = ("127.0.0.3",)


class AcceptorTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen(2048)
        self.listening.setblocking(False)
        self.port = self.listening.getsockname()[1]
        self.admitted = []
        self.door = Door(self.reactor, Limits(), 1000, Metrics(),
                         LogRateLimit(self.reactor, 10, 60.0))
        self.acceptor = RawAcceptor(self.reactor, self.listening, "server.listen[0]",
                                    self.door, lambda s, h: self.admitted.append((s, h)))
        self.addCleanup(self.acceptor.stop)
        self.acceptor.start()

    def connect(self, source="127.0.0.1"):
        client = socket.create_connection(("127.0.0.1", self.port), source_address=(source, 0))
        self.addCleanup(client.close)
        return client

    def test_admitted_sockets_are_handed_over_unread_and_nonblocking(self):
        client = self.connect("127.0.0.2")
        client.sendall(b"\x10\x00")
        self.acceptor.doRead()
        (sock, host), = self.admitted
        self.addCleanup(sock.close)
        self.assertEqual(host, "127.0.0.2")
        self.assertEqual(self.door.open_from("127.0.0.2"), 1)  # counted until released
        self.assertFalse(sock.getblocking())
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual(sock.recv(10), b"\x10\x00")  # nothing was read before us

    def test_refused_socket_is_reset_without_a_read(self):
        client = self.connect("127.0.0.3")
        self.acceptor.doRead()
        self.assertEqual(self.admitted, [])
        self.assertEqual(self.door.open, 0)
        with self.assertRaises(ConnectionResetError):
            client.recv(10)

    def test_one_refusal_does_not_touch_the_others(self):
        self.connect("127.0.0.3")
        self.connect("127.0.0.4")
        self.acceptor.doRead()
        self.assertEqual([h for _, h in self.admitted], ["127.0.0.4"])
        for sock, _ in self.admitted:
            sock.close()

    def test_every_accept_is_told_with_the_doors_verdict(self):
        heard = []
        self.acceptor.stop()
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        listening.setblocking(False)
        acceptor = RawAcceptor(self.reactor, listening, "k", self.door,
                               lambda s, h: self.admitted.append((s, h)),
                               lambda address, refusal: heard.append((address[0], refusal)))
        self.addCleanup(acceptor.stop)
        for source in ("127.0.0.3", "127.0.0.4"):
            client = socket.create_connection(listening.getsockname(),
                                              source_address=(source, 0))
            self.addCleanup(client.close)
        acceptor.doRead()
        self.assertEqual([(host, None if r is None else r.limit) for host, r in heard],
                         [("127.0.0.3", "limits.banned"), ("127.0.0.4", None)])
        for sock, _ in self.admitted:
            sock.close()

    def test_a_burst_is_taken_in_batches(self):
        for _ in range(ACCEPT_BATCH + 5):
            self.connect("127.0.0.5")
        self.acceptor.doRead()
        self.assertEqual(len(self.admitted), ACCEPT_BATCH)
        self.acceptor.doRead()
        self.assertEqual(len(self.admitted), ACCEPT_BATCH + 5)
        for sock, _ in self.admitted:
            sock.close()

    def test_out_of_descriptors_pauses_accepting_instead_of_spinning(self):
        class Exhausted:
            def __init__(self, real):
                self.real = real
                self.family = real.family

            def fileno(self):
                return self.real.fileno()

            def accept(self):
                raise OSError(errno.EMFILE, "Too many open files")

            def close(self):
                self.real.close()

        self.acceptor.stop()
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        acceptor = RawAcceptor(self.reactor, Exhausted(listening), "k", self.door, None)
        acceptor.start()
        self.addCleanup(acceptor.stop)
        acceptor.doRead()
        self.assertNotIn(acceptor, self.reactor.getReaders())
        self.reactor.advance(0.1)
        self.assertIn(acceptor, self.reactor.getReaders())
