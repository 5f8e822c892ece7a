"""What a relay tells its owner of each side's end (``when_lost``), on StringTransports and
a Clock: each side once with its connectionLost's reason, and a side the relay aborted
past the close grace once with None (not again when its abort comes back as a loss)."""
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.edge.relay import CLOSE_GRACE, Relay


class WhenLostTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.lost = []
        self.relay = Relay(self.clock, when_lost=lambda side, reason:
                           self.lost.append((side, reason)))
        self.tls, self.plain = StringTransport(), StringTransport()
        self.relay.second.makeConnection(self.plain)
        self.relay.first.makeConnection(self.tls)

    def test_each_side_once_with_its_reason(self):
        error = Failure(OSError("bad record mac"))
        self.relay.first.connectionLost(error)
        done = Failure(ConnectionDone())
        self.relay.second.connectionLost(done)
        self.assertEqual(self.lost, [(self.relay.first, error), (self.relay.second, done)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_side_aborted_past_the_grace_is_told_once_with_none(self):
        self.relay.second.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(CLOSE_GRACE - 0.001)
        self.assertEqual(len(self.lost), 1)
        self.clock.advance(0.001)
        self.assertTrue(self.tls.disconnected)  # aborted
        self.assertEqual(self.lost[1:], [(self.relay.first, None)])
        self.relay.first.connectionLost(Failure(ConnectionAborted()))  # the abort, back
        self.assertEqual(len(self.lost), 2)
        self.assertTrue(self.relay.done)
