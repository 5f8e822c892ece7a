"""The telnet manhole over StringTransport, its client side played by ``TelnetCodec``
(the one ``mqttd manhole`` uses): login right and wrong, the login deadline, the session
cap, the idle deadline and the prompt that waits for a Deferred; each bound is its
``manage.manhole_*`` key, the defaults and keys set otherwise."""
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.config import parse_config
from mqttd.manage.helpers import HelperError, Later
from mqttd.manage.manhole import manhole_factory
from mqttd.manage.manhole_client import PROMPT, TelnetCodec, plain_text
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs


class Session:
    """One telnet connection to the manhole: ``send`` what a user types, ``screen`` is
    the plain text the manhole wrote so far (negotiation answered as the client does)."""

    def __init__(self, factory, port=50000):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.codec = TelnetCodec()
        self.raw = b""
        self.protocol.makeConnection(self.transport)
        self.pump()

    def pump(self):
        while True:
            out = self.transport.value()
            self.transport.clear()
            if not out:
                return
            data, answers = self.codec.feed(out)
            self.raw += data
            if answers:
                self.protocol.dataReceived(answers)

    def send(self, text):
        self.protocol.dataReceived(self.codec.escape(text.encode("utf-8")))
        self.pump()

    @property
    def screen(self):
        self.pump()
        return plain_text(self.raw)

    def take(self):
        """The screen since the last take."""
        text, self.raw = self.screen, b""
        return text

    def output(self):
        """What the manhole printed since the last take, past the echo of the line typed."""
        return self.take().partition("\n")[2]

    def login(self, user="admin", password="s3cret"):
        self.send(user + "\r\n")
        self.send(password + "\r\n")
        return self.take()

    def lose(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


class ManholeTests(unittest.TestCase):
    keys = {}  # the [manage] keys of the manhole under test

    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.events = capture_logs(self)
        self.slow = Deferred()
        self.later = Later(self.slow, "clients")
        self.namespaces = []
        self.manage = parse_config({"manage": self.keys}).manage
        self.factory = manhole_factory(
            self.clock, self.manage, {"admin": b"s3cret"}, self.namespace_for, self.metrics,
            LogRateLimit(self.clock, 100, 60.0, metrics=self.metrics))

    def namespace_for(self, who):
        def bad():
            raise HelperError("limit: must be an integer")
        namespace = {"who": who, "slow": lambda: self.slow, "bad": bad,
                     "later": lambda: self.later}
        self.namespaces.append(namespace)
        return namespace

    def test_the_right_password_opens_a_prompt_with_the_users_namespace(self):
        session = Session(self.factory)
        self.assertIn("Username: ", session.take())
        after = session.login()
        self.assertTrue(after.endswith(PROMPT), after)
        session.send("who\r\n")
        self.assertEqual(session.take().splitlines()[-2:], ["'admin'", PROMPT])
        session.send("6 * 7\r\n")
        self.assertIn("\n42\n", session.take())
        self.assertEqual(self.metrics.manage_manhole_logins["accepted"], 1)
        self.assertEqual(self.metrics.manage_manhole_sessions, 1)
        logged = [e for e in self.events if "logged in" in e.get("log_format", "")]
        self.assertEqual((logged[0]["user"], logged[0]["peer"]), ("admin", "127.0.0.1:50000"))
        session.lose()
        self.assertEqual(self.metrics.manage_manhole_sessions, 0)

    def test_a_wrong_password_is_refused_logged_with_the_peer_and_closed(self):
        session = Session(self.factory, port=50123)
        after = session.login(password="guess")
        self.assertIn("Authentication failed", after)
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(self.metrics.manage_manhole_logins["refused"], 1)
        refused = [e for e in self.events if "login refused" in e.get("log_format", "")]
        self.assertEqual((refused[0]["user"], refused[0]["peer"]),
                         ("admin", "127.0.0.1:50123"))
        self.assertNotIn("guess", repr(refused))
        session.lose()
        self.assertEqual(self.metrics.manage_manhole_sessions, 0)
        self.assertEqual(self.namespaces, [])

    def test_an_unknown_user_is_refused_the_same_way(self):
        session = Session(self.factory)
        self.assertIn("Authentication failed", session.login(user="root"))
        self.assertEqual(self.metrics.manage_manhole_logins["refused"], 1)

    def test_a_login_not_finished_in_time_is_closed(self):
        session = Session(self.factory)
        session.send("admin\r\n")
        self.clock.advance(self.manage.manhole_login_timeout - 1)
        self.assertFalse(session.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(session.transport.disconnecting)
        self.assertIn("login timed out", session.screen)

    def test_a_logged_in_session_has_no_deadline(self):
        session = Session(self.factory)
        session.login()
        self.clock.advance(self.manage.manhole_login_timeout * 10)
        self.assertFalse(session.transport.disconnecting)

    def test_sessions_past_the_cap_are_told_and_closed(self):
        cap = self.manage.manhole_max_sessions
        sessions = [Session(self.factory, port=50000 + n) for n in range(cap)]
        extra = Session(self.factory, port=59999)
        self.assertIn("too many manhole sessions", extra.screen)
        self.assertTrue(extra.transport.disconnecting)
        extra.lose()
        self.assertEqual(self.metrics.manage_manhole_sessions, cap)
        sessions[0].lose()
        again = Session(self.factory, port=59998)
        self.assertFalse(again.transport.disconnecting)

    def test_the_prompt_waits_for_a_deferred_and_prints_its_result(self):
        session = Session(self.factory)
        session.login()
        session.send("slow()\r\n")
        self.assertEqual(session.output(), "")  # no prompt, no "<Deferred #0>"
        session.send("1 + 1\r\n")  # typed meanwhile: run after the answer
        self.assertNotIn("2\n", session.output())
        self.slow.callback({"clients": []})
        screen = session.take()
        self.assertIn("{'clients': []}\n" + PROMPT, screen)
        self.assertIn(PROMPT + "1 + 1\n2\n" + PROMPT, screen)
        session.send("_\r\n")
        self.assertIn("2", session.take())

    def test_a_helpers_later_answer_is_waited_for_and_never_iterated(self):
        session = Session(self.factory)
        session.login()
        session.send("dict(later())\r\n")  # a Deferred would spin the master for ever
        self.assertIn("error: clients() answers later: run it alone, then use _\n" + PROMPT,
                      session.output())
        session.send("later()\r\n")
        self.assertEqual(session.output(), "")
        self.slow.callback({"matched": 0})
        self.assertEqual(session.take(), "{'matched': 0}\n" + PROMPT)
        session.send("dict(_)\r\n")
        self.assertIn("{'matched': 0}", session.output())

    def test_a_failed_deferred_prints_one_line(self):
        session = Session(self.factory)
        session.login()
        session.send("slow()\r\n")
        self.slow.errback(HelperError("no such worker"))
        self.assertIn("error: no such worker\n" + PROMPT, session.take())

    def test_past_wait_the_prompt_returns_and_the_answer_comes_later(self):
        session = Session(self.factory)
        session.login()
        session.send("slow()\r\n")
        session.take()
        self.clock.advance(self.manage.manhole_answer_wait - 0.5)
        self.assertEqual(session.take(), "")
        self.clock.advance(0.5)
        self.assertIn("still waiting", session.take())
        session.send("3 * 3\r\n")
        self.assertIn("\n9\n", session.take())
        self.slow.callback("late answer")
        self.assertIn("'late answer'", session.take())

    def test_a_helper_error_is_one_line_and_other_errors_a_traceback(self):
        session = Session(self.factory)
        session.login()
        session.send("bad()\r\n")
        screen = session.take()
        self.assertIn("error: limit: must be an integer\n" + PROMPT, screen)
        self.assertNotIn("Traceback", screen)
        session.send("1 / 0\r\n")
        self.assertIn("ZeroDivisionError", session.take())

    def test_a_session_closed_while_waiting_ignores_the_answer(self):
        session = Session(self.factory)
        session.login()
        session.send("slow()\r\n")
        session.lose()
        self.slow.callback("nobody reads this")
        self.assertEqual(self.metrics.manage_manhole_sessions, 0)

    def test_byte_by_byte_input_logs_in_too(self):
        session = Session(self.factory)
        for char in "admin\r\ns3cret\r\n":
            session.send(char)
        screen = session.take()
        self.assertTrue(screen.endswith(PROMPT), screen)
        for char in "40 + 2\r\n":
            session.send(char)
        self.assertIn("\n42\n", session.take())



class ConfiguredManholeTests(ManholeTests):
    """The same behaviour with every bound set otherwise: each key takes effect."""

    keys = {"manhole_max_sessions": 2, "manhole_login_timeout": 5.0,
            "manhole_answer_wait": 2.0, "manhole_idle_timeout": 100.0}

    def test_the_keys_are_in_force(self):
        self.assertEqual((self.manage.manhole_max_sessions, self.manage.manhole_login_timeout,
                          self.manage.manhole_answer_wait), (2, 5.0, 2.0))

    def test_a_logged_in_session_has_no_deadline(self):
        """Overridden: with manhole_idle_timeout set, a silent session has one."""
        session = Session(self.factory)
        session.login()
        session.send("1\r\n")
        self.clock.advance(99)
        session.send("2")  # a keystroke, not yet a line: the deadline moves on
        self.clock.advance(99)
        self.assertFalse(session.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(session.transport.disconnecting)
        self.assertIn("idle for 100 s (manage.manhole_idle_timeout): closed", session.screen)
        session.lose()
        self.assertEqual(self.metrics.manage_manhole_sessions, 0)

    def test_a_session_waiting_for_an_answer_is_not_idle(self):
        session = Session(self.factory)
        session.login()
        session.send("slow()\r\n")
        self.clock.pump([50] * 6)  # past the answer wait and twice the idle deadline
        self.assertFalse(session.transport.disconnecting)
        self.slow.callback("done")
        self.assertIn("'done'", session.take())
        self.clock.advance(99)  # the answer moved the deadline on
        self.assertFalse(session.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(session.transport.disconnecting)

    def test_an_unfinished_login_gets_the_login_deadline_not_the_idle_one(self):
        session = Session(self.factory)
        self.clock.advance(5)
        self.assertIn("login timed out", session.screen)
