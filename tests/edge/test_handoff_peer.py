"""A relayed (TLS) client's hand-off names the client's real address: the HANDOFF_FROM
frame carries it byte by byte, the worker's ``adopt`` gets it (a plain hand-off still
calls ``adopt`` with three arguments), and the adopted protocol's transport reports it
while everything else (writes, producers, reads) goes to the real transport."""
import os
import socket

from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial import unittest

from mqttd.edge.adopt import adopt_into
from mqttd.edge.handoff_wire import (
    HANDOFF_FROM, HEADER, ChannelProtocolError, FrameReader, Handoff, decode, encode_handoff,
)
from tests.support.channels import WAIT, ChannelCase, Recorder
from tests.support.loopback import within


class WireTests(unittest.TestCase):
    def test_a_peer_rides_in_the_frame_byte_by_byte(self):
        stream = (encode_handoff(9, b"\x10\x0cCONNECT", ("127.0.0.7", 54321))
                  + encode_handoff(10, b"", ("2001:db8::1", 0))
                  + encode_handoff(11, b"plain"))
        reader, values = FrameReader(), []
        for i in range(len(stream)):
            values += [decode(t, body) for t, body in reader.feed(stream[i:i + 1])]
        self.assertEqual(values, [Handoff(9, b"\x10\x0cCONNECT", ("127.0.0.7", 54321)),
                                  Handoff(10, b"", ("2001:db8::1", 0)),
                                  Handoff(11, b"plain")])

    def test_a_peer_that_cannot_be_framed_is_refused_before_it_is_sent(self):
        for peer in [("", 1), ("h" * 65, 1), ("127.0.0.1", 65536), ("caf\u00e9", 1)]:
            with self.assertRaises(ValueError, msg=repr(peer)):
                encode_handoff(1, b"x", peer)

    def test_malformed_bodies(self):
        for body, words in [(b"\x00" * 10, "has no peer"),
                            (b"\x00" * 10 + b"\x00", "has no peer host"),
                            (b"\x00" * 10 + b"\x05ab", "has no peer host"),
                            (b"\x00" * 10 + b"\x01\xff", "not ASCII")]:
            with self.assertRaises(ChannelProtocolError, msg=body) as e:
                decode(HANDOFF_FROM, body)
            self.assertIn(words, str(e.exception))

    def test_its_header_is_a_hand_off(self):
        frame = encode_handoff(3, b"ab", ("10.0.0.1", 80))
        length, kind = HEADER.unpack_from(frame)
        self.assertEqual((length, kind), (len(frame) - HEADER.size, HANDOFF_FROM))


class ChannelTests(ChannelCase):
    @defer.inlineCallbacks
    def test_the_worker_adopts_with_the_peer_the_master_named(self):
        calls = []
        arrived = defer.Deferred()

        def adopt(fd, preread, conn_id, *peer):
            os.close(fd)
            calls.append((preread, conn_id, peer))
            if len(calls) == 2:
                arrived.callback(None)

        master, _ = self.channels(adopt=adopt)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        acked = [master.hand_off(theirs.fileno(), b"C", 1, ("127.0.0.8", 4000)),
                 master.hand_off(theirs.fileno(), b"D", 2)]
        yield within(arrived, WAIT)
        yield within(defer.gatherResults(acked), WAIT)
        self.assertEqual(calls, [(b"C", 1, (("127.0.0.8", 4000),)), (b"D", 2, ())])


class AdoptedPeerTests(ChannelCase):
    def adopt_pair(self, peer):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(ours.close)
        theirs.setblocking(False)
        built = adopt_into(reactor, protocol.Factory.forProtocol(Recorder),
                           theirs.detach(), b"CONNECT", peer)
        self.addCleanup(self.abort, built)
        return ours, built

    @defer.inlineCallbacks
    def test_the_transport_reports_the_clients_address(self):
        ours, built = self.adopt_pair(("127.0.0.9", 40001))
        self.assertIsInstance(built, Recorder)  # the protocol, not the wrapper
        self.assertEqual(built.transport.getPeer(), IPv4Address("TCP", "127.0.0.9", 40001))
        self.assertEqual(built.data, b"CONNECT")  # the preread first
        relay_end = self.twisted_client(ours)
        relay_end.transport.write(b"|more")
        self.assertEqual((yield built.received(12)), b"CONNECT|more")
        # The broker's flow control: any push producer will do.
        built.transport.registerProducer(relay_end.transport, True)
        built.transport.unregisterProducer()
        built.transport.write(b"CONNACK")
        self.assertEqual((yield relay_end.received(7)), b"CONNACK")
        built.transport.loseConnection()
        yield within(built.lost, WAIT)
        yield within(relay_end.lost, WAIT)  # closed through the wrapper

    def test_an_ipv6_peer(self):
        _, built = self.adopt_pair(("::1", 8883))
        self.assertEqual(built.transport.getPeer(), IPv6Address("TCP", "::1", 8883))

    def test_without_a_peer_the_socket_says(self):
        _, built = self.adopt_pair(None)
        self.assertEqual(built.transport.getPeer().name, None)  # an unnamed socketpair end
