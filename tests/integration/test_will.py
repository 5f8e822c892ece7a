"""Last will: published when a client dies without DISCONNECT, not after a clean one."""
from tests.integration.support.peers import wait_broker_closed
from tests.integration.support.testcase import BrokerTestCase


class WillTests(BrokerTestCase):
    def watcher(self, topic="will/#", qos=2):
        w = self.client()
        w.subscribe(topic, qos)
        return w

    def test_will_on_reset_raw_socket(self):
        watcher = self.watcher()
        raw = self.raw()
        self.assertEqual(raw.connect(client_id=self.new_id("w"), will=("will/raw", b"gone", 1, False)),
                         (0, False))
        raw.abort()  # RST, no DISCONNECT
        message = watcher.get_message()
        self.assertEqual((message.topic, message.payload, message.qos, message.retain),
                         ("will/raw", b"gone", 1, False))
        watcher.no_message(0.2)

    def test_will_on_eof_raw_socket(self):
        watcher = self.watcher()
        raw = self.raw()
        raw.connect(client_id=self.new_id("w"), will=("will/eof", b"eof", 2, False))
        raw.close()  # FIN, no DISCONNECT
        message = watcher.get_message()
        self.assertEqual((message.topic, message.payload, message.qos), ("will/eof", b"eof", 2))

    def test_will_on_paho_socket_dying(self):
        watcher = self.watcher()
        dying = self.client(will=("will/paho", b"paho died", 1, False))
        dying.kill_socket()
        message = watcher.get_message()
        self.assertEqual((message.topic, message.payload, message.qos), ("will/paho", b"paho died", 1))

    def test_no_will_after_clean_disconnect(self):
        watcher = self.watcher()
        polite = self.client(will=("will/polite", b"should not appear", 1, False))
        address = polite.client.socket().getsockname()
        polite.disconnect()
        wait_broker_closed(address, context=self.context)  # it has handled the DISCONNECT
        pub = self.client()
        pub.publish("will/marker", b"marker", 1)
        message = watcher.get_message()
        self.assertEqual((message.topic, message.payload), ("will/marker", b"marker"),
                         "the will was published after a clean DISCONNECT")
        watcher.no_message(0.2)

    def test_no_will_after_clean_disconnect_raw(self):
        watcher = self.watcher()
        raw = self.raw()
        raw.connect(client_id=self.new_id("w"), will=("will/rawpolite", b"no", 1, False))
        raw.send(b"\xe0\x00")  # DISCONNECT
        raw.wait_closed(3)
        pub = self.client()
        pub.publish("will/marker", b"marker", 1)
        self.assertEqual(watcher.get_message().topic, "will/marker")
        watcher.no_message(0.2)

    def test_retained_will(self):
        live = self.watcher("will/ret", 1)
        raw = self.raw()
        raw.connect(client_id=self.new_id("w"), will=("will/ret", b"last words", 1, True))
        raw.abort()
        self.assertEqual(live.get_message().payload, b"last words")  # the will is out
        later = self.watcher("will/ret", 1)
        message = later.get_message()
        self.assertEqual((message.payload, message.retain), (b"last words", True))
