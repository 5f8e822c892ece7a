"""Per-connection log lines: they say why a connection closed, and a storm from one
address cannot flood the journal (LogRateLimit, on a task.Clock)."""
from twisted.internet import task
from twisted.internet.defer import succeed
from twisted.logger import formatEvent
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.lograte import LogRateLimit
from mqttd.config import AuthConfig
from tests.support.broker import Client, Harness
from tests.support.logs import capture_logs


def lines(events, prefix=""):
    texts = [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("mqttd")]
    return [t for t in texts if t.startswith(prefix)]


class LogRateLimitTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.events = capture_logs(self)
        self.limit = LogRateLimit(self.clock, lines=3, window=60.0)

    def allowed(self, address, n):
        return [self.limit.allow(address) for _ in range(n)]

    def test_a_burst_passes_then_lines_are_counted(self):
        self.assertEqual(self.allowed("192.0.2.1", 5), [True, True, True, False, False])
        self.assertEqual(self.allowed("192.0.2.2", 1), [True])  # its own budget
        self.assertEqual(self.limit.metrics.mqtt_log_lines_suppressed, 2)

    def test_the_budget_refills_evenly(self):
        self.allowed("192.0.2.1", 4)
        self.clock.advance(19.9)
        self.assertFalse(self.limit.allow("192.0.2.1"))
        self.clock.advance(0.1)  # 60 s / 3 lines: one more line every 20 s
        self.assertTrue(self.limit.allow("192.0.2.1"))

    def test_the_next_line_through_is_preceded_by_a_summary(self):
        self.allowed("192.0.2.1", 7)
        self.assertEqual(lines(self.events, "suppressed"), [])
        self.clock.advance(20)
        self.assertTrue(self.limit.allow("192.0.2.1"))
        self.assertEqual(lines(self.events, "suppressed"),
                         ["suppressed 4 log lines from 192.0.2.1 (over 3 per 60.0 s)"])

    def test_an_address_that_went_quiet_gets_its_summary_at_the_end_of_the_window(self):
        self.allowed("192.0.2.1", 5)
        self.clock.advance(60)
        self.assertEqual(lines(self.events, "suppressed"),
                         ["suppressed 2 log lines from 192.0.2.1 (over 3 per 60.0 s)"])
        self.clock.advance(600)
        self.assertEqual(len(lines(self.events, "suppressed")), 1)  # once

    def test_memory_is_bounded_and_evicted_counts_still_reported(self):
        limit = LogRateLimit(self.clock, lines=1, window=60.0, max_addresses=3)
        limit.allow("198.51.100.1")
        limit.allow("198.51.100.1")  # held back
        for i in range(2, 1000):
            limit.allow(f"198.51.100.{i % 250}-{i}")
        self.assertEqual(len(limit), 3)
        self.clock.advance(60)
        self.assertEqual(lines(self.events, "suppressed"),
                         ["suppressed 1 log lines from addresses no longer tracked"])

    def test_full_buckets_are_forgotten_when_a_window_ends(self):
        self.allowed("192.0.2.1", 4)
        self.allowed("192.0.2.2", 1)
        self.clock.advance(60)
        self.assertEqual(len(self.limit), 1)  # 192.0.2.1 stays: it was held back


class ConnectionLogTests(unittest.TestCase):
    def test_a_protocol_error_logs_its_detail(self):
        events = capture_logs(self)
        h = Harness()
        c = h.client("dev")
        c.send(b"\x36" + b"\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
        self.assertTrue(c.closed)
        (line,) = lines(events, "disconnect dev")
        self.assertRegex(line, r"^disconnect dev 192\.0\.2\.7:\d+: protocol error: PUBLISH QoS is 3 ")

    def test_a_reconnect_storm_from_one_address_logs_a_few_lines_and_a_summary(self):
        events = capture_logs(self)
        h = Harness()  # the defaults: 100 lines per address per 60 s
        for i in range(250):
            c = Client(h)
            c.connect(f"flap-{i}")
            c.lose()
            h.clock.advance(0.001)
        connects = lines(events, "connect ") + lines(events, "disconnect ")
        self.assertEqual(len(connects), 100)
        other = Client(h, address="198.51.100.9")
        other.connect("elsewhere")
        self.assertEqual(len(lines(events, "connect elsewhere 198.51.100.9")), 1)
        h.clock.advance(60)
        self.assertEqual(
            lines(events, "suppressed"),
            ["suppressed 400 log lines from 192.0.2.7 (over 100 per 60.0 s)"])


class _Everyone:
    """Lets every CONNECT in, whatever its username: the lines are what is tested."""

    def authenticate(self, client_id, username, password, peer=None):
        return succeed(0)


class TokenNeverLoggedTests(unittest.TestCase):
    """A device's token is its username: the connect and auth lines name a username by
    the gate's rule (``who_of``): an ``auth.users`` name whole, any other by its prefix
    as a token, however short."""

    TOKEN = "0zoub16X3g8XOOTbWiaW-XcJdnGPnqcU"  # 32 characters, as mqttd tokens add makes

    def setUp(self):
        self.events = capture_logs(self)
        self.harness = Harness(authenticator=_Everyone(), static_users={"acme-1"})

    def connect_line(self, client_id, username):
        Client(self.harness).connect(client_id, username=username)
        (line,) = lines(self.events, f"connect {client_id} ")
        return line

    def test_a_token_is_shown_by_its_prefix_only(self):
        self.assertIn("(token 0zoub1) clean=", self.connect_line("dev-1", self.TOKEN))
        self.assertNotIn(self.TOKEN[:7], "\n".join(lines(self.events)))

    def test_a_short_token_is_shown_by_its_prefix_too(self):
        # The length of a username does not tell a token: the static users do.
        self.assertIn("(token Sh0rtT) clean=", self.connect_line("dev-2", "Sh0rtT0k3n"))
        self.assertNotIn("Sh0rtT0", "\n".join(lines(self.events)))

    def test_a_static_user_is_shown_whole_and_anonymous_as_such(self):
        self.assertIn("(user acme-1) clean=", self.connect_line("dev-3", "acme-1"))
        self.assertIn("(anonymous) clean=", self.connect_line("dev-4", None))

    def test_a_refused_token_is_shown_by_its_prefix_in_the_auth_line(self):
        h = Harness(authenticator=StaticAuthenticator(AuthConfig()))  # no anonymous
        connack = Client(h).connect("dev-5", username=self.TOKEN)
        self.assertNotEqual(connack.return_code, 0)
        (line,) = lines(self.events, "auth dev-5")
        self.assertIn("(token 0zoub1): refused", line)
        self.assertNotIn(self.TOKEN[:7], "\n".join(lines(self.events)))
