"""Retained messages: set, replaced, cleared; delivered with the retain flag only when stored."""
from tests.integration.support.mosquitto_clients import MosquittoSub, mosquitto_pub
from tests.integration.support.peers import wait_broker_closed
from tests.integration.support.testcase import BrokerTestCase


class RetainedTests(BrokerTestCase):
    def later_subscriber(self, topic, qos=1):
        sub = self.client()
        sub.subscribe(topic, qos)
        return sub

    def assertOnlyMarker(self, sub, topic):
        """Nothing retained is delivered: the first message after SUBACK is a fresh marker."""
        pub = self.client()
        pub.publish(topic, b"marker", 1)
        message = sub.get_message()
        self.assertEqual((message.payload, message.retain), (b"marker", False),
                         "a retained message was delivered before the marker")
        sub.no_message(0.1)

    def test_set_replace_clear(self):
        pub = self.client()
        live = self.client()
        live.subscribe("ret/t", 1)

        pub.publish("ret/t", b"v1", 1, retain=True)
        # An established subscription gets it as a normal message (retain flag 0, MQTT-3.3.1-9).
        message = live.get_message()
        self.assertEqual((message.payload, message.retain), (b"v1", False))

        sub1 = self.later_subscriber("ret/t")
        message = sub1.get_message()
        self.assertEqual((message.topic, message.payload, message.retain, message.qos),
                         ("ret/t", b"v1", True, 1))
        sub1.no_message(0.1)

        pub.publish("ret/t", b"v2", 1, retain=True)
        sub2 = self.later_subscriber("ret/t")
        message = sub2.get_message()
        self.assertEqual((message.payload, message.retain), (b"v2", True))
        sub2.no_message(0.1)  # v1 is gone: replaced, not added

        pub.publish("ret/t", b"", 1, retain=True)  # clears the retained message
        sub3 = self.later_subscriber("ret/t")
        self.assertOnlyMarker(sub3, "ret/t")

    def test_retained_qos_is_min_of_stored_and_subscription(self):
        pub = self.client()
        pub.publish("retq/t", b"q2", 2, retain=True)
        for sub_qos in (0, 1, 2):
            sub = self.later_subscriber("retq/t", sub_qos)
            message = sub.get_message()
            self.assertEqual((message.payload, message.retain, message.qos), (b"q2", True, sub_qos))

    def test_wildcard_subscription_gets_every_matching_retained(self):
        pub = self.client()
        for topic in ("retw/a", "retw/b/c", "retw/b/d", "other/x"):
            pub.publish(topic, topic.encode(), 1, retain=True)
        sub = self.later_subscriber("retw/#")
        got = sorted((m.topic, m.payload, m.retain) for m in sub.get_messages(3))
        self.assertEqual(got, [("retw/a", b"retw/a", True), ("retw/b/c", b"retw/b/c", True),
                               ("retw/b/d", b"retw/b/d", True)])
        sub.no_message(0.1)
        plus = self.later_subscriber("retw/+/c")
        message = plus.get_message()
        self.assertEqual((message.topic, message.retain), ("retw/b/c", True))
        plus.no_message(0.1)

    def test_retained_survives_publisher_disconnect(self):
        pub = self.client()
        pub.publish("retd/t", b"kept", 1, retain=True)
        address = pub.client.socket().getsockname()
        pub.disconnect()
        wait_broker_closed(address, context=self.context)
        sub = self.later_subscriber("retd/t")
        self.assertEqual(sub.get_message().payload, b"kept")

    def test_retained_qos0_from_mosquitto_pub(self):
        """mosquitto_pub's default, QoS 0: its DISCONNECT arrives before the commit, and
        the message must still be retained once committed."""
        mosquitto_pub(self.port, "ret0/t", "qos0 kept", qos=0, retain=True)
        sub = self.later_subscriber("ret0/t")
        self.assertEqual(sub.get_message().payload, b"qos0 kept")

    def test_retained_with_mosquitto_clients(self):
        mosquitto_pub(self.port, "retm/t", "from cli", qos=1, retain=True)
        ms = MosquittoSub(self.port, "retm/t", qos=1, count=1, wait=5)
        self.addCleanup(ms.kill)
        rc, messages = ms.result()
        self.assertEqual((rc, messages), (0, [(1, 1, "retm/t", b"from cli")]), ms.lines)
        mosquitto_pub(self.port, "retm/t", "", qos=1, retain=True)
        sub = self.later_subscriber("retm/t")
        self.assertOnlyMarker(sub, "retm/t")
