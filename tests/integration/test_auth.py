"""Authentication: anonymous refused by default (CONNACK 5), bad password 4, good user 0."""
from tests.integration.support.paho_client import PahoClient
from tests.integration.support.process import BROKER_KIND
from tests.integration.support.raw_client import connect_packet, publish_packet
from tests.integration.support.testcase import BrokerTestCase

# 3.1.1 return code 4 is "bad user name or password"; mosquitto answers 5 (not authorized).
BAD_PASSWORD = 4 if BROKER_KIND == "mqttd" else 5

USERS = """
[auth]
allow_anonymous = false

[[auth.users]]
username = "u"
password = "p"

[[auth.users]]
username = "sensor-7"
password = "s3cret w/ spaces"
"""


class AuthTests(BrokerTestCase):
    config = USERS

    def connack(self, **kwargs):
        """CONNACK return code for a raw CONNECT; a refused connection must then be closed."""
        raw = self.raw()
        code, session_present = raw.connect(client_id=self.new_id("a"), **kwargs)
        if code != 0:
            self.assertFalse(session_present, "session_present must be 0 with a refusal")
            raw.wait_closed(3)
        return code

    def test_anonymous_refused(self):
        self.assertEqual(self.connack(), 5)

    def test_bad_password_refused(self):
        self.assertEqual(self.connack(username="u", password="wrong"), BAD_PASSWORD)

    def test_missing_password_refused(self):
        self.assertIn(self.connack(username="u"), (4, 5))

    def test_unknown_user_refused(self):
        self.assertIn(self.connack(username="nobody", password="p"), (4, 5))

    def test_good_users_accepted(self):
        self.assertEqual(self.connack(username="u", password="p"), 0)
        self.assertEqual(self.connack(username="sensor-7", password="s3cret w/ spaces"), 0)

    def test_good_user_round_trip_with_paho(self):
        sub = self.client(username="u", password="p")
        sub.subscribe("auth/t", 1)
        pub = self.client(username="sensor-7", password="s3cret w/ spaces")
        pub.publish("auth/t", b"authenticated", 1)
        self.assertEqual(sub.get_message().payload, b"authenticated")

    def test_refused_client_cannot_publish(self):
        """Bytes sent after a refused CONNECT are not routed."""
        sub = self.client(username="u", password="p")
        sub.subscribe("auth/#", 1)
        raw = self.raw()
        raw.send(connect_packet(client_id=self.new_id("a"), username="u", password="wrong"))
        try:
            raw.send(publish_packet("auth/sneak", b"sneaky", qos=0))
        except OSError:
            pass
        raw.wait_closed(3)
        pub = self.client(username="u", password="p")
        pub.publish("auth/marker", b"marker", 1)
        self.assertEqual(sub.get_message().topic, "auth/marker")
        sub.no_message(0.1)


class DefaultConfigAuthTests(BrokerTestCase):
    """An empty config file: the appliance default refuses anonymous clients."""

    config = ""

    def test_anonymous_refused_by_default(self):
        raw = self.raw()
        code, _ = raw.connect(client_id=self.new_id("a"))
        self.assertEqual(code, 5)
        raw.wait_closed(3)

    def test_paho_sees_refusal(self):
        c = PahoClient(self.port, client_id=self.new_id("a"), context=self.context)
        self.addCleanup(c.close)
        reason, _ = c.connect(expect_success=False)
        self.assertTrue(reason.is_failure, reason)
        c.wait_disconnected(3)
