"""Hand-offs of real sockets from a MasterChannel to a WorkerChannel: the worker's
protocol reads the preread first, then what the client sends, and the client sees no EOF
when the master closes its fd; a burst pairs every fd with its own frame; what cannot be
adopted is refused back to the master."""
import os
import socket
import struct

from twisted.internet import defer, protocol

from mqttd.edge.handoff import HandoffRefused
from tests.support.channels import WAIT, ChannelCase, Echo
from tests.support.loopback import within


class HandoffTests(ChannelCase):
    @defer.inlineCallbacks
    def test_preread_then_later_bytes_and_no_eof_after_the_master_closes_its_fd(self):
        master, _ = self.channels(factory=protocol.Factory.forProtocol(Echo))
        client, server = self.tcp_pair()
        client.sendall(b"CONNECT")
        server.settimeout(WAIT)
        preread = server.recv(100)  # what the master read before handing off
        server.setblocking(False)
        client.sendall(b"|after")  # in the kernel's buffer when the worker adopts it
        peer = self.twisted_client(client)
        conn_id = yield within(master.hand_off(server.fileno(), preread, 41), WAIT)
        self.assertEqual(conn_id, 41)
        server.close()  # close(2), the master's only move after the ack

        echoed = yield peer.received(len(b"CONNECT|after"))
        self.assertEqual(echoed, b"CONNECT|after")
        peer.transport.write(b"|later")  # after the master's close: still talking
        echoed = yield peer.received(len(b"CONNECT|after|later"))
        self.assertEqual(echoed, b"CONNECT|after|later")
        self.assertEqual(self.adopted[41].data, b"CONNECT|after|later")
        self.assertFalse(peer.lost.called)
        self.assertFalse(self.adopted[41].lost.called)
        self.assertEqual(self.adopted[41].transport.getPeer().port,
                         peer.transport.getHost().port)

    @defer.inlineCallbacks
    def test_a_burst_pairs_every_fd_with_its_own_frame(self):
        # 300: more than the window (256), so the last 44 wait in the master's queue
        master, _ = self.channels()
        count = 300
        pairs = [self.tcp_pair() for _ in range(count)]
        for i, (client, _) in enumerate(pairs):
            client.sendall(b"%d;" % i)  # each client's own first bytes, unread
        acks = [master.hand_off(server.fileno(), b"pre%d|" % i, i)
                for i, (_, server) in enumerate(pairs)]
        self.assertEqual((master.in_flight, master.queued), (256, 44))
        results = yield within(defer.gatherResults(acks), WAIT)
        self.assertEqual(results, list(range(count)))
        for _, server in pairs:
            server.close()
        for i in range(count):
            expected = b"pre%d|%d;" % (i, i)
            got = yield self.adopted[i].received(len(expected))
            self.assertEqual(got, expected)

    @defer.inlineCallbacks
    def test_ipv6_and_unix_stream_clients_are_adopted_by_their_family(self):
        master, _ = self.channels(factory=protocol.Factory.forProtocol(Echo))
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
        self.addCleanup(listener.close)
        client6 = socket.create_connection(listener.getsockname()[:2])
        server6, _ = listener.accept()
        unix_client, unix_server = socket.socketpair()
        for conn_id, (client, server) in enumerate([(client6, server6),
                                                    (unix_client, unix_server)]):
            server.setblocking(False)
            self.addCleanup(server.close)
            peer = self.twisted_client(client)
            yield within(master.hand_off(server.fileno(), b"hi", conn_id), WAIT)
            server.close()
            self.assertEqual((yield peer.received(2)), b"hi")
        self.assertEqual(self.adopted[0].transport.getPeer().type, "TCP")
        self.assertEqual(self.adopted[0].transport.getPeer().host, "::1")
        self.assertEqual(type(self.adopted[1].transport.getPeer()).__name__, "UNIXAddress")

    @defer.inlineCallbacks
    def test_what_the_worker_cannot_adopt_is_refused_and_released(self):
        class Refusing(protocol.Factory):
            def buildProtocol(self, addr):
                return None

        master, _ = self.channels(factory=Refusing())
        _, server = self.tcp_pair()
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        reset_client, reset_server = self.tcp_pair()
        reset_client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset_client.close()  # RST: the socket the master holds is dead
        refusals = []
        for conn_id, fd in enumerate([server.fileno(), read_end, reset_server.fileno()]):
            d = master.hand_off(fd, b"", 10 + conn_id)
            yield self.assertFailure(within(d, WAIT), HandoffRefused).addCallback(
                lambda error: refusals.append(str(error)))
        self.assertEqual(refusals[0], "conn 10: the worker could not adopt it: "
                                      "AdoptionFailed: the factory built no protocol")
        self.assertTrue(refusals[1].startswith("conn 11: the worker could not adopt it: "
                                               "OSError: [Errno 88]"), refusals[1])
        self.assertTrue(refusals[2].startswith("conn 12: the worker could not adopt it: "
                                               "OSError: [Errno 107]"), refusals[2])
        self.assertEqual(master.in_flight, 0)
