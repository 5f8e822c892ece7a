"""adopt_into alone, on real TCP pairs in the trial reactor: the preread comes before
what the socket holds, the fd received is closed whatever happens, and a protocol that
fails on adoption leaves no half-adopted connection behind."""
import errno
import os
import socket

from twisted.internet import defer, protocol, reactor

from mqttd.edge.adopt import AdoptionFailed, adopt_into
from tests.support.channels import WAIT, ChannelCase, Recorder
from tests.support.logs import capture_logs
from tests.support.loopback import within


def _closed(fd):
    try:
        os.fstat(fd)
    except OSError as e:
        return e.errno == errno.EBADF
    return False


class AdoptIntoTests(ChannelCase):
    def received_fd(self, server):
        """A fresh fd for ``server``'s socket, as the worker's recvmsg gives one."""
        fd = os.dup(server.fileno())
        server.close()
        return fd

    @defer.inlineCallbacks
    def test_the_preread_comes_before_what_the_socket_holds(self):
        client, server = self.tcp_pair()
        client.sendall(b"|held by the kernel")
        fd = self.received_fd(server)
        built = adopt_into(reactor, protocol.Factory.forProtocol(Recorder), fd, b"CONNECT")
        self.addCleanup(self.abort, built)
        self.assertTrue(_closed(fd))
        self.assertEqual(built.data, b"CONNECT")  # before the reactor read anything
        self.assertEqual((yield built.received(26)), b"CONNECT|held by the kernel")

    @defer.inlineCallbacks
    def test_a_protocol_that_fails_on_the_preread_is_aborted(self):
        class Failing(Recorder):
            def dataReceived(self, data):
                raise ValueError("no")

        events = capture_logs(self)
        client, server = self.tcp_pair()
        peer = self.twisted_client(client)
        fd = self.received_fd(server)
        built = adopt_into(reactor, protocol.Factory.forProtocol(Failing), fd, b"x")
        self.assertTrue(_closed(fd))
        yield within(peer.lost, WAIT)  # the client saw its connection end
        yield within(built.lost, WAIT)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIn("the adopted protocol failed on the bytes the master read",
                      [e.get("log_format") for e in events])

    @defer.inlineCallbacks
    def test_a_protocol_that_fails_to_start_is_not_left_adopted(self):
        class NotStarting(Recorder):
            def connectionMade(self):
                raise RuntimeError("refusing")

        client, server = self.tcp_pair()
        peer = self.twisted_client(client)
        fd = self.received_fd(server)
        factory = protocol.Factory.forProtocol(NotStarting)
        with self.assertRaises(RuntimeError):
            adopt_into(reactor, factory, fd, b"x")
        self.assertTrue(_closed(fd))
        yield within(peer.lost, WAIT)  # aborted: the client saw its connection end

    def test_a_protocol_that_closes_at_once_is_not_fed(self):
        class Closing(Recorder):
            def connectionMade(self):
                self.transport.loseConnection()

        _, server = self.tcp_pair()
        built = adopt_into(reactor, protocol.Factory.forProtocol(Closing),
                           self.received_fd(server), b"x")
        self.assertEqual(built.data, b"")
        return self.abort(built)

    def test_not_a_stream_socket(self):
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fd = self.received_fd(datagram)
        with self.assertRaises(AdoptionFailed) as caught:
            adopt_into(reactor, protocol.Factory.forProtocol(Recorder), fd, b"")
        self.assertEqual(str(caught.exception), f"fd {fd} is not a stream socket")
        self.assertTrue(_closed(fd))
