"""Outbound QoS 1/2 to a subscriber whose socket is full waits in its session's queue.

Bounded there by ``max_queued_messages`` and ``max_queued_bytes``, not piled up in the
transport's buffer, where a subscriber that stopped reading would hold ``max_inflight``
packets of up to ``max_packet_size`` each.
"""
from twisted.trial import unittest

from mqttd.codec import Connack, Connect, Puback, Publish, Subscribe
from tests.support.broker import Client, Harness, pub, publishes
from tests.support.broker import SmallBufferTransport

BIG = 64 * 1024


class FullSocketTransport(SmallBufferTransport):
    """Reports full (pauses its producer) once more than ``limit`` bytes wait unread;
    ``read_all`` is the client reading it all, after which the transport resumes us.
    ``peak`` is the most it ever held unread."""

    peak = 0

    def write(self, data):
        super().write(data)
        self.peak = max(self.peak, len(self.value()))

    def read_all(self, client):
        packets = client.received()
        self.drained()
        return packets


def read_until_quiet(client, ack=False):
    """What the client reads, drain after drain, until nothing more comes."""
    got = []
    while True:
        packets = client.transport.read_all(client)
        if not packets:
            return got
        got += packets
        if ack:
            client.send(*[Puback(p.packet_id) for p in publishes(packets)])


def slow_subscriber(h, client_id="slow", qos=1):
    c = Client(h, transport_class=FullSocketTransport)
    c.connect(client_id)
    c.send(Subscribe(1, (("big", qos),)))
    c.received()
    return c


class FullSocketTests(unittest.TestCase):
    def test_the_transport_holds_one_packet_beyond_its_limit_the_queue_the_rest(self):
        h = Harness(max_queued_messages=10)
        sub = slow_subscriber(h)
        publisher = h.client("pub")
        for i in range(100):
            publisher.send(pub("big", b"%03d" % i + b"x" * (BIG - 3), qos=1, pid=i + 1))
        held = len(sub.transport.value())
        self.assertLessEqual(held, FullSocketTransport.limit + BIG + 16)
        session = h.broker.sessions["slow"]
        self.assertEqual(len(session.queue), 10)
        self.assertEqual(h.broker.metrics.mqtt_dropped["queue_full"], 100 - 1 - 10)
        got = publishes(read_until_quiet(sub, ack=True))
        self.assertLessEqual(sub.transport.peak, FullSocketTransport.limit + BIG + 16)
        # The first message, then the ten queued, in order; the rest were dropped.
        self.assertEqual([p.payload[:3] for p in got], [b"%03d" % i for i in range(11)])
        self.assertEqual(session.queued_bytes, 0)

    def test_the_queue_is_bounded_in_bytes(self):
        h = Harness(max_queued_bytes=3 * BIG + 100)
        sub = slow_subscriber(h)
        publisher = h.client("pub")
        for i in range(20):
            publisher.send(pub("big", b"x" * BIG, qos=1, pid=i + 1))
        session = h.broker.sessions["slow"]
        self.assertEqual(len(session.queue), 3)
        self.assertLessEqual(session.queued_bytes, 3 * BIG + 100)
        self.assertEqual(h.broker.metrics.mqtt_dropped["queue_full"], 20 - 1 - 3)

    def test_an_empty_queue_takes_one_message_bigger_than_its_byte_bound(self):
        h = Harness(max_queued_bytes=1024)
        sub = slow_subscriber(h)
        publisher = h.client("pub")
        publisher.send(*[pub("big", b"%d" % i + b"x" * BIG, qos=1, pid=i + 1)
                         for i in range(3)])
        self.assertEqual(len(h.broker.sessions["slow"].queue), 1)  # the first is written
        self.assertEqual(h.broker.metrics.mqtt_dropped["queue_full"], 1)

    def test_qos2_waits_in_the_queue_too(self):
        h = Harness()
        sub = slow_subscriber(h, qos=2)
        publisher = h.client("pub")
        for i in range(5):
            publisher.send(pub("big", b"x" * BIG, qos=2, pid=i + 1))
        self.assertEqual(len(publishes(sub.received())), 1)
        self.assertEqual(len(h.broker.sessions["slow"].queue), 4)

    def test_an_ack_while_the_socket_is_full_sends_nothing_more(self):
        h = Harness()
        sub = slow_subscriber(h)
        publisher = h.client("pub")
        publisher.send(*[pub("big", b"x" * BIG, qos=1, pid=i + 1) for i in range(3)])
        [first] = publishes(sub.received())  # read, but the socket still reports full
        sub.send(Puback(first.packet_id))
        self.assertEqual(sub.transport.value(), b"")
        self.assertEqual(len(publishes(sub.transport.read_all(sub))), 0)
        # It drained: the queued two go out, as the socket takes them.
        self.assertEqual(len(publishes(sub.received())), 1)

    def test_qos0_to_a_full_socket_is_dropped_while_qos1_waits(self):
        """QoS 0 keeps README's "Behaviour an operator should know": best effort drops
        while the socket is full; QoS 1 beside it waits its turn in the queue."""
        h = Harness()
        sub = Client(h, transport_class=FullSocketTransport)
        sub.connect("slow")
        sub.send(Subscribe(1, (("big", 0), ("q", 1))))
        sub.received()
        publisher = h.client("pub")
        publisher.send(*[pub("big", b"x" * BIG) for _ in range(5)],
                       pub("q", b"kept", qos=1, pid=1))
        self.assertEqual([p.topic for p in publishes(sub.transport.read_all(sub))], ["big"])
        self.assertEqual(h.broker.metrics.mqtt_dropped["slow"], 4)
        self.assertEqual([p.payload for p in publishes(sub.received())], [b"kept"])


class RedeliveryTests(unittest.TestCase):
    def test_redelivery_on_reconnect_waits_for_the_socket_in_order(self):
        """A reconnect resends every unacknowledged message [MQTT-4.4.0-1]: as the
        socket takes them, oldest first, before anything queued."""
        h = Harness(max_inflight=20)
        first = h.client("dev", clean=False)
        first.send(Subscribe(1, (("big", 1),)))
        first.received()
        publisher = h.client("pub")
        for i in range(10):
            publisher.send(pub("big", b"%d" % i + b"x" * BIG, qos=1, pid=i + 1))
        sent = publishes(first.received())
        self.assertEqual(len(sent), 10)
        first.lose()  # none acknowledged
        publisher.send(pub("big", b"new", qos=1, pid=50))  # queued while offline
        again = Client(h, transport_class=FullSocketTransport)
        again.send(Connect("dev", clean_session=False))
        self.assertLessEqual(len(again.transport.value()), FullSocketTransport.limit + BIG + 16)
        got = read_until_quiet(again)
        self.assertLessEqual(again.transport.peak, FullSocketTransport.limit + BIG + 16)
        self.assertEqual(got[0], Connack(True, 0))
        got = publishes(got)
        self.assertEqual([(p.payload[:3], p.dup) for p in got],
                         [(b"%d" % i + b"xx", True) for i in range(10)] + [(b"new", False)])
        self.assertEqual([p.packet_id for p in got[:10]], [p.packet_id for p in sent])

    def test_a_message_acknowledged_before_its_resend_is_not_resent(self):
        h = Harness()
        first = h.client("dev", clean=False)
        first.send(Subscribe(1, (("big", 1),)))
        first.received()
        publisher = h.client("pub")
        publisher.send(*[pub("big", b"%d" % i + b"x" * BIG, qos=1, pid=i + 1)
                         for i in range(3)])
        sent = publishes(first.received())
        first.lose()
        again = Client(h, transport_class=FullSocketTransport)
        again.connect("dev", clean=False)
        again.send(Puback(sent[2].packet_id))  # (it had the message from before)
        got = publishes(read_until_quiet(again))
        self.assertEqual([p.packet_id for p in got], [sent[0].packet_id, sent[1].packet_id])
        self.assertTrue(all(isinstance(p, Publish) and p.dup for p in got))
