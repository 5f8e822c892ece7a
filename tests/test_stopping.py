"""A clean stop: every message already read is committed and acknowledged before the
connection closes, no will is published for it, and the tiers stop one after another.

The real Broker and WebhookSink on a Clock (tests/support/pressure.py), connections on
StringTransport, the webhook held until the test answers."""
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from mqttd.codec import Puback, Publish
from mqttd.codec.packets import Will
from mqttd.stopping import BrokerStop, SequentialStop
from tests.support.pressure import BrokerHarness


class _Pool:
    closed = False

    def closeCachedConnections(self):
        self.closed = True
        d = Deferred()
        d.callback(None)
        return d


class BrokerStopTests(unittest.TestCase):
    def setUp(self):
        self.h = BrokerHarness(pool_size=1, batch_size=100, batch_delay=1.0)
        self.pool = _Pool()
        self.stop = BrokerStop(self.h.clock, self.h.broker, self.h.store, self.pool,
                               drain_timeout=5.0)
        self.stop.startService()

    def publish(self, client, first, n):
        client.send(*[Publish(topic="t/x", payload=b"%d" % i, qos=1, packet_id=i)
                      for i in range(first, first + n)])

    def test_what_was_read_is_acknowledged_then_the_connection_closes_without_its_will(self):
        h = self.h
        client = h.client("dev", will=Will(topic="w/dev", payload=b"gone", qos=0,
                                            retain=False))
        watcher = h.subscriber("w/#", client_id="watch")
        self.publish(client, 1, 3)
        d = self.stop.stopService()
        self.publish(client, 4, 2)  # read after the stop began: must not be taken
        h.http.flush()
        self.assertFalse(client.closed)
        self.assertNoResult(d)
        self.assertEqual(h.answer(), 3)  # only the three read before the stop
        acks = [p.packet_id for p in client.received() if isinstance(p, Puback)]
        self.assertEqual(acks, [1, 2, 3])
        self.assertTrue(client.closed)
        self.assertTrue(watcher.closed)
        client.lose()
        watcher.lose()
        self.successResultOf(d)
        self.assertTrue(self.pool.closed)
        self.assertEqual([p for p in watcher.received() if isinstance(p, Publish)], [],
                         "a will was published for a server stop")

    def test_the_stop_reads_nothing_more(self):
        h = self.h
        client = h.client("dev")
        self.publish(client, 1, 1)
        self.stop.stopService()
        self.assertTrue(client.paused)

    def test_connections_that_never_close_do_not_hold_the_stop_for_ever(self):
        h = self.h
        client = h.client("dev")
        self.publish(client, 1, 1)
        d = self.stop.stopService()
        h.http.flush()
        h.answer()
        self.assertNoResult(d)  # its transport never reports the close
        h.clock.advance(2.0)
        self.successResultOf(d)
        self.assertTrue(client.closed)


class _Recorded(Service):
    def __init__(self, name, log, gate=None):
        self.setName(name)
        self._log = log
        self._gate = gate

    def stopService(self):
        super().stopService()
        self._log.append(self.name)
        return self._gate


class SequentialStopTests(unittest.TestCase):
    def test_each_stops_after_the_one_added_after_it_has_finished(self):
        log, gate = [], Deferred()
        root = SequentialStop()
        _Recorded("ingest", log).setServiceParent(root)
        _Recorded("broker", log, gate).setServiceParent(root)
        _Recorded("listeners", log).setServiceParent(root)
        root.startService()
        d = root.stopService()
        self.assertEqual(log, ["listeners", "broker"])
        self.assertNoResult(d)
        gate.callback(None)
        self.assertEqual(log, ["listeners", "broker", "ingest"])
        self.successResultOf(d)
