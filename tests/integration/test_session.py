"""Persistent sessions (clean_session=0) and client-id takeover."""
from tests.integration.support.testcase import BrokerTestCase


class PersistentSessionTests(BrokerTestCase):
    def test_offline_messages_delivered_on_reconnect(self):
        cid = self.new_id("p")
        sub = self.client(cid, connect=False, clean_session=False)
        self.assertEqual(sub.connect()[1], False)  # no session yet
        self.assertEqual(sub.subscribe("sess/#", 2), 2)
        sub.disconnect()

        pub = self.client()
        sent = [("sess/a", b"one", 1), ("sess/b", b"two", 2), ("sess/a", b"three", 1), ("sess/c", b"four", 2)]
        for topic, payload, qos in sent:
            pub.publish(topic, payload, qos)

        back = self.client(cid, connect=False, clean_session=False)
        reason, session_present = back.connect()
        self.assertTrue(session_present, "session_present is false on reconnect with clean_session=0")
        received = [(m.topic, m.payload, m.qos) for m in back.get_messages(len(sent))]
        self.assertEqual(sorted(received), sorted(sent))
        # Order is only promised within one QoS (paho hands a QoS 2 message over at PUBREL).
        for qos in (1, 2):
            self.assertEqual([r for r in received if r[2] == qos], [s for s in sent if s[2] == qos])
        back.no_message(0.2)

        # The subscription itself persisted: live delivery works without subscribing again.
        pub.publish("sess/live", b"live", 1)
        message = back.get_message()
        self.assertEqual((message.topic, message.payload, message.qos), ("sess/live", b"live", 1))

    def test_qos0_subscription_does_not_turn_offline_messages_into_qos1(self):
        cid = self.new_id("p")
        sub = self.client(cid, clean_session=False)
        sub.subscribe("sess0/t", 1)
        sub.disconnect()
        pub = self.client()
        pub.publish("sess0/t", b"q1", 1)
        back = self.client(cid, connect=False, clean_session=False)
        self.assertTrue(back.connect()[1])
        message = back.get_message()
        self.assertEqual((message.payload, message.qos), (b"q1", 1))

    def test_clean_session_discards_state(self):
        cid = self.new_id("p")
        sub = self.client(cid, clean_session=False)
        sub.subscribe("disc/#", 1)
        sub.disconnect()

        clean = self.client(cid, connect=False, clean_session=True)
        self.assertEqual(clean.connect()[1], False, "session_present must be 0 with clean_session=1")
        clean.disconnect()

        pub = self.client()
        pub.publish("disc/t", b"nobody listens", 1)

        again = self.client(cid, connect=False, clean_session=False)
        self.assertEqual(again.connect()[1], False, "the session should have been discarded")
        again.subscribe("disc/marker", 1)
        pub.publish("disc/marker", b"marker", 1)
        self.assertEqual(again.get_message().payload, b"marker",
                         "a message for a discarded session was delivered")
        again.no_message(0.1)

    def test_messages_to_offline_persistent_session_survive_several_reconnects(self):
        cid = self.new_id("p")
        pub = self.client()
        sub = self.client(cid, clean_session=False)
        sub.subscribe("multi/t", 1)
        sub.disconnect()
        for round_ in range(3):
            pub.publish("multi/t", f"r{round_}".encode(), 1)
            back = self.client(cid, connect=False, clean_session=False)
            self.assertTrue(back.connect()[1])
            self.assertEqual(back.get_message().payload, f"r{round_}".encode())
            back.no_message(0.1)
            back.disconnect()


class TakeoverTests(BrokerTestCase):
    def test_second_connection_disconnects_first(self):
        cid = self.new_id("dup")
        first = self.client(cid)
        second = self.client(cid)  # connects fine
        first.wait_disconnected(5)
        # The second connection works (subscribe, publish to itself, receive).
        second.subscribe("tk/t", 1)
        second.publish("tk/t", b"mine", 1)
        self.assertEqual(second.get_message().payload, b"mine")
        self.assertFalse(second.disconnected.is_set())

    def test_takeover_keeps_persistent_session(self):
        cid = self.new_id("dup")
        first = self.client(cid, connect=False, clean_session=False)
        first.connect()
        first.subscribe("tks/#", 1)
        second = self.client(cid, connect=False, clean_session=False)
        _, session_present = second.connect()
        first.wait_disconnected(5)
        self.assertTrue(session_present, "takeover of a persistent session must report session_present")
        pub = self.client()
        pub.publish("tks/x", b"to the new connection", 1)
        self.assertEqual(second.get_message().payload, b"to the new connection")
        first.no_message(0.1)

    def test_takeover_of_raw_connection(self):
        cid = self.new_id("dup")
        raw = self.raw()
        self.assertEqual(raw.connect(client_id=cid), (0, False))
        second = self.client(cid)
        raw.wait_closed(5)
        second.subscribe("tkr/t", 0)
        second.publish("tkr/t", b"ok", 0)
        self.assertEqual(second.get_message().payload, b"ok")
