"""QoS 0/1/2 round trips, topic filters and ordering, with paho and mosquitto's clients."""
import os

from tests.integration.support.mosquitto_clients import MosquittoSub, mosquitto_pub
from tests.integration.support.process import ANONYMOUS, not_on_mosquitto
from tests.integration.support.testcase import BrokerTestCase


class QoSRoundTripTests(BrokerTestCase):
    def test_qos_matrix(self):
        """Every (publish QoS, subscription QoS) pair arrives intact with QoS min(pub, sub)."""
        sub = self.client()
        for sub_qos in (0, 1, 2):
            self.assertEqual(sub.subscribe(f"rt/s{sub_qos}", sub_qos), sub_qos)
        pub = self.client()
        expected = {}
        for sub_qos in (0, 1, 2):
            for pub_qos in (0, 1, 2):
                payload = bytes(range(256)) + f"|pub{pub_qos}|sub{sub_qos}".encode()
                expected[payload] = (f"rt/s{sub_qos}", min(pub_qos, sub_qos))
                pub.publish(f"rt/s{sub_qos}", payload, pub_qos)
        received = sub.get_messages(len(expected))
        got = {m.payload: (m.topic, m.qos) for m in received}
        self.assertEqual(got, expected)
        self.assertEqual([m.retain for m in received], [False] * len(expected))
        sub.no_message(0.2)  # exactly once each, no duplicates

    def test_each_qos_separately(self):
        """One subscriber/publisher pair per QoS, payload bytes equal, QoS preserved."""
        for qos in (0, 1, 2):
            sub = self.client()
            sub.subscribe(f"each/{qos}", qos)
            pub = self.client()
            payload = os.urandom(64)
            pub.publish(f"each/{qos}", payload, qos)
            message = sub.get_message()
            self.assertEqual((message.topic, message.payload, message.qos), (f"each/{qos}", payload, qos))

    def test_large_and_empty_payloads(self):
        sub = self.client()
        sub.subscribe("big/#", 1)
        pub = self.client()
        big = os.urandom(200_000)
        pub.publish("big/one", big, 1)
        pub.publish("big/empty", b"", 1)
        first, second = sub.get_messages(2)
        self.assertEqual((first.topic, len(first.payload), first.payload == big), ("big/one", len(big), True))
        self.assertEqual((second.topic, second.payload), ("big/empty", b""))

    def test_topic_filters(self):
        """'+' matches one level, '#' matches any levels including the parent."""
        plus = self.client()
        plus.subscribe("tf/+/c", 1)
        hash_ = self.client()
        hash_.subscribe("tf/#", 1)
        other = self.client()
        other.subscribe("nottf/#", 1)
        pub = self.client()
        for topic in ("tf/b/c", "tf/b/d", "tf/x/y/c", "tf", "tfx/b/c", "tf/m/c"):
            pub.publish(topic, topic.encode(), 1)
        # tf/m/c is the last publish and matches both filters: everything before it has been routed.
        self.assertEqual([m.topic for m in plus.get_messages(2)], ["tf/b/c", "tf/m/c"])
        self.assertEqual([m.topic for m in hash_.get_messages(5)], ["tf/b/c", "tf/b/d", "tf/x/y/c", "tf", "tf/m/c"])
        plus.no_message(0.1)
        hash_.no_message(0.1)
        other.no_message(0.1)

    def test_unsubscribe_stops_delivery(self):
        sub = self.client()
        sub.subscribe("uns/a", 1)
        sub.subscribe("uns/marker", 1)
        pub = self.client()
        pub.publish("uns/a", b"before", 1)
        self.assertEqual(sub.get_message().payload, b"before")
        sub.unsubscribe("uns/a")
        pub.publish("uns/a", b"after", 1)
        pub.publish("uns/marker", b"marker", 1)
        self.assertEqual(sub.get_message().payload, b"marker")
        sub.no_message(0.1)

    def test_self_delivery(self):
        """A client subscribed to a topic receives its own publishes (MQTT 3.1.1 has no no-local)."""
        c = self.client()
        c.subscribe("self/t", 2)
        c.publish("self/t", b"me", 2)
        message = c.get_message()
        self.assertEqual((message.payload, message.qos), (b"me", 2))


class OrderingWithSmallWindowTests(BrokerTestCase):
    config = ANONYMOUS + "[broker]\nmax_inflight = 2\nmax_queued_messages = 1000\n"

    def test_qos1_order_kept_through_small_inflight_window(self):
        """60 pipelined QoS 1 messages through an outbound window of 2 arrive all, in order."""
        sub = self.client()
        sub.subscribe("ord/t", 1)
        pub = self.client()
        infos = [pub.client.publish("ord/t", str(i).encode(), 1) for i in range(60)]
        for info in infos:
            info.wait_for_publish(5)
            self.assertTrue(info.is_published())
        payloads = [int(m.payload) for m in sub.get_messages(60, timeout=10)]
        self.assertEqual(payloads, list(range(60)))

    @not_on_mosquitto(
        "it drops inbound QoS 2 publishes beyond max_inflight_messages (PUBREC 0x97, which a "
        "3.1.1 client reads as success): acknowledged data lost, the incident's very bug")
    def test_qos2_order_kept_through_small_inflight_window(self):
        """30 pipelined QoS 2 messages: inbound backpressure, not loss; outbound, all in order."""
        sub = self.client()
        sub.subscribe("ord2/t", 2)
        pub = self.client()
        infos = [pub.client.publish("ord2/t", str(i).encode(), 2) for i in range(30)]
        for info in infos:
            info.wait_for_publish(5)
            self.assertTrue(info.is_published())
        received = sub.get_messages(30, timeout=10)
        self.assertEqual([int(m.payload) for m in received], list(range(30)))
        self.assertEqual({m.qos for m in received}, {2})
        sub.no_message(0.2)


class MosquittoClientsTests(BrokerTestCase):
    """Interoperability with Debian's mosquitto_pub and mosquitto_sub."""

    def test_mosquitto_pub_to_paho(self):
        sub = self.client()
        sub.subscribe("mp/#", 2)
        # QoS 0 too: mosquitto_pub sends DISCONNECT right after it, before the commit.
        for qos in (0, 1, 2):
            mosquitto_pub(self.port, f"mp/q{qos}", f"hello {qos}", qos=qos)
            message = sub.get_message()
            self.assertEqual((message.topic, message.payload, message.qos, message.retain),
                             (f"mp/q{qos}", f"hello {qos}".encode(), qos, False))

    def test_paho_to_mosquitto_sub(self):
        pub = self.client()
        for qos in (1, 2):
            ms = MosquittoSub(self.port, f"ms/q{qos}", qos=qos, count=1, wait=5)
            self.addCleanup(ms.kill)
            ms.wait_subscribed()
            payload = os.urandom(32)
            pub.publish(f"ms/q{qos}", payload, qos)
            rc, messages = ms.result()
            self.assertEqual((rc, messages), (0, [(qos, 0, f"ms/q{qos}", payload)]), ms.lines)

    def test_mosquitto_pub_to_mosquitto_sub(self):
        ms = MosquittoSub(self.port, "mm/t", qos=2, count=1, wait=5)
        self.addCleanup(ms.kill)
        ms.wait_subscribed()
        mosquitto_pub(self.port, "mm/t", "via cli", qos=2)
        rc, messages = ms.result()
        self.assertEqual((rc, messages), (0, [(2, 0, "mm/t", b"via cli")]), ms.lines)
