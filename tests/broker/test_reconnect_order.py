"""Receive order across reconnects [MQTT-4.6.0-6]: messages of a dropped connection,
of the next one and the will are routed in the order received, whatever order they
commit in.
"""
from mqttd.codec import Disconnect, Puback, Will
from tests.support.after_close import AfterCloseCase
from tests.support.broker import Client, pub


class ReconnectOrderTests(AfterCloseCase):
    def test_receive_order_holds_across_a_reconnect(self):
        """[MQTT-4.6.0-6]: "A" on the connection that dropped, then "B" on the next one,
        same topic; B commits first (A's batch retried after a 503, say): still A then
        B, and the retained value is B, not A come back stale."""
        for qos in (0, 1):
            self.setUp()
            self.drop_with(pub("t/s", b"A", qos=qos, pid=1 if qos else None, retain=True))
            again = self.back_with(pub("t/s", b"B", qos=qos, pid=2 if qos else None, retain=True))
            self.store.succeed(1)
            self.assertEqual(again.received(), [Puback(2)] if qos else [])  # acked at once
            self.assertEqual(self.delivered(), [])  # routed after A
            self.store.succeed(0)
            self.assertEqual(self.delivered(), [b"A", b"B"])
            self.assertEqual(self.h.broker.retained.get("t/s").payload, b"B")
            self.assertEqual(len(self.h.broker.inbound), 0)

    def test_receive_order_holds_across_several_reconnects(self):
        self.drop_with(pub("t/s", b"A", qos=1, pid=1))
        self.back_with(pub("t/s", b"B", qos=1, pid=2)).lose()
        last = self.back_with(pub("t/s", b"C", qos=1, pid=3))
        self.store.succeed(2)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"A", b"B", b"C"])
        last.send(pub("t/s", b"D", qos=1, pid=4))
        self.store.succeed(3)
        self.assertEqual(self.delivered(), [b"D"])  # nothing before it now: at once
        self.assertEqual(len(self.h.broker.inbound), 0)


class WillOrderTests(AfterCloseCase):
    def test_a_later_connections_will_waits_for_an_earlier_ones_messages(self):
        """The device said "online" and dropped before its commit; it came back, said it
        again (stored, acknowledged) and dropped for good: the will "offline" must not
        be overtaken by the first connection's late "online"."""
        self.drop_with(pub("t/status", b"online", qos=1, pid=1, retain=True))
        again = Client(self.h)
        again.connect("dev", clean=False, will=Will("t/status", b"offline", 1, retain=True))
        again.send(pub("t/status", b"online", qos=1, pid=1, retain=True, dup=True))
        self.store.succeed(1)
        again.lose()
        self.store.succeed(2)  # the will commits first
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"online", b"online", b"offline"])
        self.assertEqual(self.h.broker.retained.get("t/status").payload, b"offline")
        self.assertEqual(len(self.h.broker.inbound), 0)

    def test_the_will_follows_what_was_received_before_the_drop(self):
        """A retained "online" still being stored when the connection drops must not
        land after the will's retained "offline", even when the will commits first."""
        c = self.h.client("dev", will=Will("t/status", b"offline", 1, retain=True))
        c.send(pub("t/status", b"online", qos=1, pid=1, retain=True))
        c.lose()
        self.assertEqual(len(self.store.calls), 2)  # the will is stored at once ...
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [])  # ... and routed after "online"
        self.store.succeed(0)
        self.assertEqual(self.delivered(), [b"online", b"offline"])
        self.assertEqual(self.h.broker.retained.get("t/status").payload, b"offline")

    def test_the_will_goes_before_the_next_connection_of_that_client(self):
        """Reconnecting (after a drop, or taking over) while the old connection's
        messages are still being stored: its will is routed before the new
        connection's retained "online", in whatever order the three commit."""
        for takeover in (False, True):
            for order in ((0, 1, 2), (2, 1, 0), (1, 2, 0), (0, 2, 1)):
                self.setUp()
                old = self.h.client("dev", will=Will("t/status", b"offline", 1, retain=True))
                old.send(pub("t/data", b"reading", qos=1, pid=1))  # pending
                if not takeover:
                    old.lose()
                new = Client(self.h)
                new.connect("dev")
                if takeover:
                    old.lose()
                new.send(pub("t/status", b"online", qos=1, pid=1, retain=True))
                for i in order:
                    self.store.succeed(i)
                self.assertEqual(self.delivered(), [b"reading", b"offline", b"online"],
                                 (takeover, order))
                self.assertEqual(self.h.broker.retained.get("t/status").payload, b"online")
                self.assertEqual((len(self.store.calls), len(self.h.broker.inbound)), (3, 0))

    def test_the_will_is_published_after_a_failed_message_too(self):
        c = self.h.client("dev", will=Will("t/status", b"offline", 1))
        c.send(pub("t/1", b"lost", qos=1, pid=1))
        c.lose()
        self.store.fail(0)
        self.store.succeed(1)
        self.assertEqual(self.delivered(), [b"offline"])
        self.flushLoggedErrors(RuntimeError)

    def test_no_will_after_disconnect_even_with_messages_pending(self):
        c = self.h.client("dev", will=Will("t/status", b"offline", 1))
        c.send(pub("t/1", b"last", qos=0), Disconnect())
        c.lose()
        self.store.succeed(0)
        self.assertEqual((self.delivered(), len(self.store.calls)), ([b"last"], 1))
