"""After a close: what commits once its connection is gone gets no ack but is routed and
retained; a connection closed while its reads are paused still finishes closing; a
client that flaps leaves no closed connection behind.
"""
from twisted.trial import unittest

from mqttd.codec import Connect, Disconnect
from tests.support.after_close import AfterCloseCase
from tests.support.broker import Client, Harness, ManualStore, pub


class AfterCloseTests(AfterCloseCase):
    def test_publish_then_disconnect_is_routed_and_retained(self):
        """mosquitto_pub -r: CONNECT, PUBLISH, DISCONNECT before the commit lands."""
        c = Client(self.h)
        c.send(Connect("lamp", True, 0, None, None, None),
               pub("t/lamp", b"on", qos=0, retain=True), Disconnect())
        c.lose()
        self.assertEqual((self.delivered(), self.h.broker.retained.get("t/lamp")), ([], None))
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"on"])
        self.assertEqual(self.h.broker.retained.get("t/lamp").payload, b"on")

    def test_clean_session_routes_every_committed_qos_in_receive_order(self):
        c = self.h.client("dev")
        c.send(pub("t/1", b"a", qos=1, pid=1), pub("t/1", b"b", qos=2, pid=2),
               pub("t/1", b"c", qos=0), pub("t/1", b"d", qos=1, pid=3))
        c.lose()
        self.store.succeed(2)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])  # "a" first: still waiting for it
        self.store.fail(0)  # never stored: never routed, and no longer in the way
        self.assertEqual(self.delivered(), [b"b", b"c"])
        self.store.succeed(3)
        self.assertEqual(self.delivered(), [b"d"])
        self.assertEqual(c.received(), [])  # no acks after the close
        self.flushLoggedErrors(RuntimeError)

    def test_persistent_session_routes_what_commits_after_the_close(self):
        """publish(qos=1, retain=True), then disconnect() without waiting for the PUBACK:
        a client that never comes back must not leave data stored and never delivered."""
        c = Client(self.h)
        c.send(Connect("lamp", False, 60, None, None, None),
               pub("t/lamp", b"on", qos=1, pid=1, retain=True), pub("t/lamp", b"q0"),
               Disconnect())
        c.lose()
        self.store.succeed(0)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [b"on", b"q0"])
        self.assertEqual(self.h.broker.retained.get("t/lamp").payload, b"on")

    def test_store_failure_closes_and_routes_what_was_committed(self):
        c = self.h.client("dev")
        c.send(pub("t/1", b"a", qos=1, pid=1), pub("t/1", b"b", qos=1, pid=2))
        self.store.succeed(1)
        self.store.fail(0)
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])
        self.assertEqual(self.delivered(), [b"b"])
        self.flushLoggedErrors(RuntimeError)


class FlappingTests(AfterCloseCase):
    def test_a_client_that_flaps_does_not_keep_its_old_connections(self):
        """200 drops, each with a message still being stored, the newest committing
        first: once all is routed no closed connection stays referenced."""
        import gc

        from mqttd.broker.protocol import MQTTServerProtocol
        for i in range(200):
            self.drop_with(pub("t/s", b"%d" % i))
        self.back_with()
        for i in reversed(range(len(self.store.calls))):
            self.store.succeed(i)
        self.assertEqual(self.delivered(), [b"%d" % i for i in range(200)])
        self.assertEqual(len(self.h.broker.inbound), 0)
        gc.collect()
        alive = sum(isinstance(o, MQTTServerProtocol) and o.factory is self.h.factory
                    for o in gc.get_objects())
        self.assertLess(alive, 10)


class ClosingWhilePausedTests(unittest.TestCase):
    """A connection closed while its reads are paused must still finish closing: over
    TLS, loseConnection waits for the client's close_notify, which a paused transport
    never reads, so the socket and its max_connections slot were never released."""

    def paused_client(self, h):
        c = h.client("dev")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        self.assertTrue(c.paused)
        return c

    def test_takeover_resumes_reading_before_closing(self):
        h = Harness(store=ManualStore(), max_inflight=2)
        old = self.paused_client(h)
        h.client("dev")  # the same client id again: the old connection is closed
        self.assertTrue(old.closed)
        self.assertFalse(old.paused)

    def test_disconnect_in_the_read_that_fills_the_window(self):
        """publish() x N then disconnect() without waiting: the last PUBLISH pauses
        reading, the DISCONNECT in the same read closes."""
        h = Harness(store=ManualStore(), max_inflight=2)
        c = h.client("dev")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2), Disconnect())
        self.assertTrue(c.closed)
        self.assertFalse(c.paused)

    def test_a_close_that_never_completes_is_aborted(self):
        store = ManualStore()
        h = Harness(store=store, max_inflight=2)
        c = self.paused_client(h)
        store.fail(0)  # the store gives up: closed without acks
        self.flushLoggedErrors(RuntimeError)
        self.assertTrue(c.closed)
        self.assertFalse(c.transport.disconnected)
        h.clock.advance(9.9)
        self.assertFalse(c.transport.disconnected)
        h.clock.advance(0.1)  # the client never let it finish (no close_notify, no EOF)
        self.assertTrue(c.transport.disconnected)  # aborted
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 1)  # released once connectionLost comes
        c.lose()
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 0)

    def test_a_close_that_completes_cancels_the_abort(self):
        h = Harness(store=ManualStore(), max_inflight=2)
        c = self.paused_client(h)
        c.disconnect()
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertFalse(c.transport.disconnected)
