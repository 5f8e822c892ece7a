"""Connection lifecycle: CONNECT handling, timeouts, keepalive, wills, takeover, errors."""
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.reading import INFLIGHT
from mqttd.codec import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Subscribe,
    Will,
    encode,
)
from mqttd.config import AuthConfig, User
from tests.support.broker import (
    Client,
    Harness,
    ManualAuthenticator,
    SmallBufferTransport,
    pub,
    publishes,
)
from tests.support.logs import capture_logs, disconnect_reasons


class ConnackCodeTests(unittest.TestCase):
    def _refused(self, h, connect):
        c = Client(h)
        c.send(connect)
        packets = c.received()
        self.assertTrue(c.closed)
        self.assertEqual(len(packets), 1)
        return packets[0]

    def test_unacceptable_protocol_level_from_codec(self):
        h = Harness()
        connack = self._refused(h, Connect("c", protocol_level=5))
        self.assertEqual(connack, Connack(False, 0x01))
        self.assertEqual(h.broker.metrics.mqtt_protocol_errors, 1)

    def test_client_id_too_long(self):
        h = Harness(max_clientid_len=5)
        self.assertEqual(self._refused(h, Connect("abcdef")), Connack(False, 0x02))
        self.assertEqual(Client(h).connect("abcde"), Connack(False, 0))
        self.assertEqual(h.broker.metrics.mqtt_connect_refused, {"client id too long": 1})

    def test_zero_length_client_id_not_allowed(self):
        h = Harness(allow_zero_length_clientid=False)
        self.assertEqual(self._refused(h, Connect("")), Connack(False, 0x02))
        self.assertEqual(h.broker.metrics.mqtt_connect_refused, {"empty client id": 1})

    def test_zero_length_client_id_with_persistent_session(self):
        h = Harness()
        self.assertEqual(self._refused(h, Connect("", clean_session=False)),
                         Connack(False, 0x02))

    def test_bad_credentials(self):
        h = Harness(authenticator=StaticAuthenticator(AuthConfig(users=(User("u", "p"),))))
        self.assertEqual(self._refused(h, Connect("c", username="u", password=b"x")),
                         Connack(False, 0x04))
        self.assertNotIn("c", h.broker.sessions)

    def test_not_authorized(self):
        h = Harness(authenticator=StaticAuthenticator(AuthConfig(allow_anonymous=False)))
        self.assertEqual(self._refused(h, Connect("c")), Connack(False, 0x05))
        # The authenticator's refusals are its own to count (the gate's edge_gate_refused).
        self.assertEqual(h.broker.metrics.mqtt_connect_refused, {})

    def test_authenticator_error_is_server_unavailable(self):
        auth = ManualAuthenticator()
        h = Harness(authenticator=auth)
        c = Client(h)
        c.send(Connect("c"))
        auth.pending[0].errback(RuntimeError("accounts db down"))
        self.assertEqual(c.received(), [Connack(False, 0x03)])
        self.assertTrue(c.closed)
        self.flushLoggedErrors(RuntimeError)

    def test_generated_client_id(self):
        h = Harness()
        a, b = Client(h), Client(h)
        self.assertEqual(a.connect(""), Connack(False, 0))
        self.assertEqual(b.connect(""), Connack(False, 0))
        ids = list(h.broker.sessions)
        self.assertEqual(len(ids), 2)
        self.assertNotEqual(ids[0], ids[1])
        self.assertTrue(all(ids))

    def test_byte_by_byte_connect_and_publish(self):
        h = Harness()
        c = Client(h)
        c.send(Connect("c"), pub("t", b"p", qos=1, pid=5), bytewise=True)
        self.assertEqual(c.received(), [Connack(False, 0), Puback(5)])
        self.assertEqual([m.payload for m in h.store.messages], [b"p"])


class AsyncAuthTests(unittest.TestCase):
    def test_reading_paused_and_later_packets_processed_in_order(self):
        auth = ManualAuthenticator()
        h = Harness(authenticator=auth)
        c = Client(h)
        c.send(Connect("c"), pub("t", b"1", qos=1, pid=1))
        self.assertTrue(c.paused)
        c.send(pub("t", b"2", qos=1, pid=2), Pingreq())
        self.assertEqual(c.received(), [])
        self.assertEqual(list(h.store.messages), [])
        auth.pending[0].callback(0)
        self.assertEqual(c.received(), [Connack(False, 0), Puback(1), Puback(2), Pingresp()])
        self.assertEqual([m.payload for m in h.store.messages], [b"1", b"2"])
        self.assertFalse(c.paused)

    def test_refusal_discards_backlog(self):
        auth = ManualAuthenticator()
        h = Harness(authenticator=auth)
        c = Client(h)
        c.send(Connect("c"), pub("t", b"1", qos=1, pid=1))
        auth.pending[0].callback(0x05)
        self.assertEqual(c.received(), [Connack(False, 0x05)])
        self.assertEqual(list(h.store.messages), [])
        self.assertTrue(c.closed)

    def test_socket_lost_during_auth(self):
        auth = ManualAuthenticator()
        h = Harness(authenticator=auth)
        c = Client(h)
        c.send(Connect("c"))
        c.lose()
        auth.pending[0].callback(0)
        self.assertEqual(c.received(), [])
        self.assertEqual(h.broker.sessions, {})
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 0)

    def test_auth_that_never_answers_times_out(self):
        auth = ManualAuthenticator()
        h = Harness(authenticator=auth, idle_timeout=5.0)
        c = Client(h)
        c.send(Connect("c"))
        h.clock.advance(5)
        self.assertTrue(c.closed)


class IdleTimeoutTests(unittest.TestCase):
    def test_no_connect_within_idle_timeout_closes(self):
        h = Harness(idle_timeout=3.0)
        c = Client(h)
        c.send(encode(Connect("c"))[:5])  # incomplete CONNECT does not count
        h.clock.advance(2.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.1)
        self.assertTrue(c.closed)
        self.assertTrue(c.transport.disconnected)  # aborted, not waiting for a flush
        self.assertEqual(c.received(), [])

    def test_connected_client_not_closed_by_idle_timeout(self):
        h = Harness(idle_timeout=3.0, max_keepalive=1000)
        c = h.client("c")
        h.clock.advance(100)
        self.assertFalse(c.closed)
        # What is left is keepalive's timer, at 1.5 x max_keepalive (keepalive 0).
        self.assertEqual([call.getTime() for call in h.clock.getDelayedCalls()], [1500.0])


class KeepaliveTests(unittest.TestCase):
    def test_expiry_at_one_and_a_half_times(self):
        events = capture_logs(self)
        h = Harness()
        c = h.client("c", keepalive=10)
        h.clock.advance(14.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.1)
        self.assertTrue(c.closed)
        self.assertIn("keepalive timeout", disconnect_reasons(events))

    def test_activity_postpones_expiry(self):
        h = Harness()
        c = h.client("c", keepalive=10)
        h.clock.advance(10)
        c.send(Pingreq())
        self.assertEqual(c.received(), [Pingresp()])
        h.clock.advance(14.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.1)
        self.assertTrue(c.closed)

    def test_one_timer_not_reset_per_packet(self):
        h = Harness()
        c = h.client("c", keepalive=10)
        [call] = h.clock.getDelayedCalls()
        c.send(*[pub("t")] * 20)
        self.assertEqual(h.clock.getDelayedCalls(), [call])
        self.assertEqual(call.getTime(), 15)

    def test_zero_gets_max_keepalive(self):
        """Keepalive 0 asks for no limit on silence; the server keeps its own
        (broker.max_keepalive, at 1.5x as for any keepalive)."""
        events = capture_logs(self)
        h = Harness(max_keepalive=100)
        c = h.client("c", keepalive=0)
        h.clock.advance(149.9)
        self.assertFalse(c.closed)
        h.clock.advance(0.2)
        self.assertTrue(c.closed)
        self.assertEqual(disconnect_reasons(events), ["keepalive timeout"])

    def test_pingreq(self):
        h = Harness()
        c = h.client("c")
        c.send(Pingreq(), Pingreq())
        self.assertEqual(c.received(), [Pingresp(), Pingresp()])


class WillTests(unittest.TestCase):
    def _watch(self, h):
        w = h.client("watcher")
        w.send(Subscribe(1, (("will/#", 1),)))
        w.received()
        return w

    def _will_client(self, h, retain=False, **kw):
        return h.client("dev", will=Will("will/dev", b"gone", 1, retain), **kw)

    def test_socket_loss_publishes_will(self):
        h = Harness()
        w = self._watch(h)
        self._will_client(h).lose()
        got = publishes(w.received())
        self.assertEqual([(m.topic, m.payload, m.qos) for m in got],
                         [("will/dev", b"gone", 1)])
        self.assertEqual(h.store.messages[-1].client_id, "dev")

    def test_disconnect_discards_will(self):
        h = Harness()
        w = self._watch(h)
        self._will_client(h).disconnect()
        self.assertEqual(publishes(w.received()), [])
        self.assertEqual(h.broker.metrics.mqtt_wills_published, 0)

    def test_protocol_error_publishes_will(self):
        h = Harness()
        w = self._watch(h)
        c = self._will_client(h)
        c.send(b"\x00\x00")
        self.assertTrue(c.closed)
        c.lose()
        self.assertEqual(len(publishes(w.received())), 1)
        self.assertEqual(h.broker.metrics.mqtt_wills_published, 1)

    def test_keepalive_expiry_publishes_will(self):
        h = Harness()
        w = self._watch(h)
        self._will_client(h, keepalive=2)
        h.clock.advance(3)
        self.assertEqual(len(publishes(w.received())), 1)

    def test_retained_will(self):
        h = Harness()
        self._will_client(h, retain=True).lose()
        late = h.client("late")
        late.send(Subscribe(1, (("will/dev", 0),)))
        got = publishes(late.received())
        self.assertEqual([(m.payload, m.retain) for m in got], [(b"gone", True)])


class TakeoverTests(unittest.TestCase):
    def test_second_connection_closes_first_and_publishes_its_will(self):
        events = capture_logs(self)
        h = Harness()
        w = h.client("watcher")
        w.send(Subscribe(1, (("will", 0),)))
        w.received()
        first = h.client("dev", clean=False, will=Will("will", b"w"))
        first.send(Subscribe(1, (("t", 1),)))
        first.received()
        second = Client(h)
        self.assertEqual(second.connect("dev", clean=False), Connack(True, 0))
        self.assertTrue(first.closed)
        self.assertIn("takeover", disconnect_reasons(events))
        self.assertEqual([m.payload for m in publishes(w.received())], [b"w"])
        first.lose()  # the old socket finishing must not disturb the new owner
        h.client("pub").send(pub("t", b"after", qos=1))
        self.assertEqual([m.payload for m in publishes(second.received())], [b"after"])
        self.assertEqual(publishes(first.received()), [])
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 3)

    def test_takeover_with_clean_session_starts_fresh(self):
        h = Harness()
        first = h.client("dev", clean=False)
        first.send(Subscribe(1, (("t", 1),)))
        second = Client(h)
        self.assertEqual(second.connect("dev", clean=True), Connack(False, 0))
        self.assertTrue(first.closed)
        self.assertEqual(len(h.broker.trie), 0)


class ErrorIsolationTests(unittest.TestCase):
    def test_malformed_bytes_close_only_that_connection(self):
        events = capture_logs(self)
        h = Harness()
        good = h.client("good")
        good.send(Subscribe(1, (("t", 1),)))
        good.received()
        bad = h.client("bad")
        bad.send(b"\xf0\x00")  # reserved packet type 15
        self.assertTrue(bad.closed)
        self.assertFalse(good.closed)
        bad.lose()
        good.send(pub("t", b"still", qos=1, pid=2))
        packets = good.received()
        self.assertIn(Puback(2), packets)
        self.assertEqual([m.payload for m in publishes(packets)], [b"still"])
        self.assertIn("protocol error", disconnect_reasons(events))

    def test_first_packet_not_connect(self):
        h = Harness()
        c = Client(h)
        c.send(Pingreq())
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])

    def test_second_connect_is_protocol_error(self):
        h = Harness()
        c = h.client("c")
        c.send(Connect("c"))
        self.assertTrue(c.closed)
        self.assertEqual(c.received(), [])

    def test_oversized_packet(self):
        h = Harness(max_packet_size=64)
        c = h.client("c")
        c.send(pub("t", b"x" * 100))
        self.assertTrue(c.closed)
        self.assertEqual(list(h.store.messages), [])


class ConnectionLimitTests(unittest.TestCase):
    def test_over_max_connections_closed_at_once(self):
        h = Harness(max_connections=2)
        a, b = Client(h), Client(h)
        c = Client(h)
        self.assertTrue(c.closed)
        self.assertFalse(a.closed or b.closed)
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 2)
        self.assertEqual(h.broker.metrics.mqtt_connections_refused, 1)
        c.lose()
        a.lose()
        self.assertEqual(h.broker.metrics.mqtt_connections_open, 1)
        d = Client(h)
        self.assertFalse(d.closed)
        self.assertEqual(d.connect("d"), Connack(False, 0))

    def test_a_reloaded_cap_applies_to_new_sockets_and_drops_no_one(self):
        """SIGHUP's ``reload_max_connections``: raised, the sockets past the old cap get
        in; lowered below what is open, every open one stays and new ones are refused
        until fewer are open."""
        events = capture_logs(self)
        h = Harness(max_connections=2)
        a, b = h.client("a"), h.client("b")
        self.assertTrue(Client(h).closed)
        h.broker.reload_max_connections(3)
        c = h.client("c")
        self.assertTrue(Client(h).closed)
        self.assertIn(("broker.max_connections is now {max_connections} ({open} open)", 3, 2),
                      [(e["log_format"], e.get("max_connections"), e.get("open"))
                       for e in events])
        h.broker.reload_max_connections(1)
        self.assertFalse(a.closed or b.closed or c.closed)
        a.lose()
        b.lose()
        self.assertTrue(Client(h).closed)  # one open: at the lowered cap
        self.assertEqual(h.broker.metrics.mqtt_connections_refused, 3)
        c.lose()
        self.assertEqual(Client(h).connect("d"), Connack(False, 0))

    def test_disconnect_logged_with_client_and_peer(self):
        events = capture_logs(self)
        h = Harness()
        c = h.client("dev")
        c.disconnect()
        [event] = [e for e in events if e.get("log_format", "").startswith("disconnect")]
        self.assertEqual(event["client_id"], "dev")
        self.assertEqual(event["reason"], "client disconnect")
        self.assertTrue(event["peer"].startswith("192.0.2.7:"))


class ReadGatedTransport(SmallBufferTransport):
    """As a real socket: what the client sends while we do not read waits until we do."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inbound = []
        self.protocol = None

    def client_sends(self, data):
        if self.producerState == "paused":
            self.inbound.append(data)
        else:
            self.protocol.dataReceived(data)

    def resumeProducing(self):
        super().resumeProducing()
        while self.inbound and self.producerState != "paused":
            self.protocol.dataReceived(self.inbound.pop(0))


class SlowReaderTests(unittest.TestCase):
    """A client that reads slower than we write cannot grow the broker's memory."""

    def setUp(self):
        self.h = Harness()
        self.sub = self.h.client("slow")
        self.sub.send(Subscribe(1, (("t", 0), ("q", 1))))
        self.sub.received()
        self.pub = self.h.client("pub")

    def test_registered_as_producer_once_connected(self):
        self.assertIs(self.sub.transport.producer, self.sub.protocol)
        self.assertTrue(self.sub.transport.streaming)

    def test_full_write_buffer_drops_qos0_and_stops_reading(self):
        self.sub.transport.producer.pauseProducing()  # what a full write buffer does
        self.assertTrue(self.sub.paused)
        self.pub.send(pub("t", b"dropped"), pub("q", b"kept", qos=1, pid=1))
        self.assertEqual(publishes(self.sub.received()), [])  # QoS 1 waits in its queue
        self.assertEqual(self.h.broker.metrics.mqtt_dropped["slow"], 1)
        self.sub.transport.producer.resumeProducing()
        self.assertFalse(self.sub.paused)
        self.assertEqual([(p.topic, p.payload) for p in publishes(self.sub.received())],
                         [("q", b"kept")])
        self.pub.send(pub("t", b"again"))
        self.assertEqual([p.payload for p in publishes(self.sub.received())], [b"again"])

    def retained(self, count, h=None):
        h = h or self.h
        publisher = h.client("retainer")
        for i in range(count):
            publisher.send(pub(f"r/{i:03d}", b"x" * 1024, retain=True))

    def subscribe_small_buffer(self, h=None):
        reader = Client(h or self.h, transport_class=SmallBufferTransport)
        reader.connect("reader")
        reader.send(Subscribe(2, (("r/#", 0),)))
        return reader

    def test_every_retained_message_reaches_a_reader_whose_buffer_fills(self):
        """One SUBSCRIBE's retained messages pass Twisted's 64 kB write buffer in one
        turn, which pauses us even for a fast reader: all must still be sent
        [MQTT-3.3.1-6], not dropped as if it were slow."""
        self.retained(50)
        reader = self.subscribe_small_buffer()
        got = []
        while True:
            packets = publishes(reader.received())
            if not packets:
                break
            got += packets
            reader.transport.drained()
        self.assertEqual(sorted(p.topic for p in got), [f"r/{i:03d}" for i in range(50)])
        self.assertTrue(all(p.retain for p in got))
        self.assertEqual(self.h.broker.metrics.mqtt_dropped["slow"], 0)
        self.assertFalse(reader.paused)  # all sent: read again

    def test_held_retained_messages_are_bounded_by_max_queued_messages(self):
        h = Harness(max_queued_messages=3)
        self.retained(20, h)
        reader = self.subscribe_small_buffer(h)
        first = len(publishes(reader.received()))  # up to the pause
        self.assertEqual(h.broker.metrics.mqtt_dropped["slow"], 20 - first - 3)
        reader.transport.drained()
        self.assertEqual(len(publishes(reader.received())), 3)

    def test_live_qos0_behind_held_retained_messages_is_dropped(self):
        """Order is kept, and the backlog only shrinks: the reader is read again once
        it drained what it was owed."""
        self.retained(20)
        reader = self.subscribe_small_buffer()
        reader.send(Subscribe(3, (("t", 0),)))  # (as if it were read)
        reader.received()
        self.pub.send(pub("t", b"live"))
        self.assertEqual(self.h.broker.metrics.mqtt_dropped["slow"], 1)
        for _ in range(20):
            reader.transport.drained()
            reader.received()
        self.assertFalse(reader.paused)
        self.pub.send(pub("t", b"later"))
        self.assertEqual([p.payload for p in publishes(reader.received())], [b"later"])

    def test_held_retained_messages_are_dropped_with_the_connection(self):
        self.retained(20)
        reader = self.subscribe_small_buffer()
        sent = len(publishes(reader.received()))
        reader.lose()
        self.assertEqual(self.h.broker.metrics.mqtt_dropped["offline"], 20 - sent)

    def test_a_reader_that_drains_is_read_again_under_sustained_qos0(self):
        """More QoS 0 offered than it drains must not keep us from reading it: its
        PINGREQs and PUBACKs are read at every drain."""
        reader = Client(self.h, transport_class=ReadGatedTransport)
        reader.transport.protocol = reader.protocol
        reader.connect("reader")
        reader.send(Subscribe(1, (("t", 0), ("q", 1))))
        reader.received()
        self.pub.send(*[pub("t", b"x" * 1024) for _ in range(20)])
        self.assertTrue(reader.paused)
        reader.transport.client_sends(encode(Pingreq()))
        got = []
        for i in range(20):
            self.pub.send(pub("q", b"%d" % i, qos=1, pid=i + 1))
            for p in reader.received():
                got.append(p)
                if isinstance(p, Publish) and p.qos == 1:
                    reader.transport.client_sends(encode(Puback(p.packet_id)))
            reader.transport.drained()
            self.pub.send(*[pub("t", b"x" * 1024) for _ in range(8)])
        got += reader.received()  # the last QoS 1 went out at the last drain
        self.assertIn(Pingresp(), got)
        self.assertEqual(len([p for p in got if isinstance(p, Publish) and p.qos == 1]), 20)
        self.assertEqual(reader.transport.inbound, [])
        self.assertEqual(self.h.broker.metrics.mqtt_dropped["queue_full"], 0)

    def test_keepalive_counts_from_the_last_drain_while_the_socket_is_full(self):
        """We stop reading while its socket is full, so its PINGREQs wait unread; but
        every drain shows it alive. A client that drains nothing is closed as silent."""
        c = self.h.client("dev", keepalive=4)
        c.transport.producer.pauseProducing()
        self.h.clock.advance(5.0)
        c.transport.producer.resumeProducing()  # it drained: alive
        c.transport.producer.pauseProducing()
        self.h.clock.advance(5.9)
        self.assertFalse(c.closed)
        self.h.clock.advance(0.2)  # 6 s (1.5 x keepalive) since it last drained anything
        self.assertTrue(c.closed)

    def test_other_pause_reasons_survive_a_drained_buffer(self):
        """Resuming writes must not resume reading that auth/inflight paused."""
        self.sub.protocol._reading.pause(INFLIGHT)  # the inflight window is full
        self.sub.transport.producer.pauseProducing()
        self.sub.transport.producer.resumeProducing()
        self.assertTrue(self.sub.paused)

    def test_producer_unregistered_before_closing(self):
        """A transport with a registered producer would never finish closing."""
        self.sub.send(Disconnect())
        self.assertIsNone(self.sub.transport.producer)
        self.assertTrue(self.sub.closed)


class NoDelayTests(unittest.TestCase):
    def test_tcp_nodelay_on_tcp_transports(self):
        from twisted.internet.testing import StringTransport

        class TCPTransport(StringTransport):
            nodelay = None

            def setTcpNoDelay(self, enabled):
                self.nodelay = enabled

        h = Harness()
        protocol = h.factory.buildProtocol(None)
        transport = TCPTransport()
        protocol.makeConnection(transport)
        self.assertIs(transport.nodelay, True)
