"""The manhole client's telnet side, byte by byte: what it answers to the server's option
requests, what it passes on as data, and how it escapes what it sends."""
import socket

from twisted.trial import unittest

from mqttd.manage.manhole_client import (DO, DONT, ECHO, IAC, LINEMODE, NAWS, SB, SE, SGA,
                                         WILL, WONT, LoginRefused, ManholeClient,
                                         ManholeError, TelnetCodec, plain_text)


def fed(codec, data, bytewise=False):
    if not bytewise:
        return codec.feed(data)
    out, answers = b"", b""
    for i in range(len(data)):
        o, a = codec.feed(data[i:i + 1])
        out, answers = out + o, answers + a
    return out, answers


class CodecTests(unittest.TestCase):
    def check(self, data, want_out, want_answers):
        for bytewise in (False, True):
            self.assertEqual(fed(TelnetCodec((100, 40)), data, bytewise),
                             (want_out, want_answers), f"bytewise={bytewise}")

    def test_plain_data_passes(self):
        self.check(b"Username: ", b"Username: ", b"")

    def test_a_doubled_iac_is_one_data_byte(self):
        self.check(bytes((65, IAC, IAC, 66)), bytes((65, IAC, 66)), b"")

    def test_it_lets_the_server_echo_and_go_character_at_a_time(self):
        self.check(bytes((IAC, WILL, ECHO, IAC, WILL, SGA)), b"",
                   bytes((IAC, DO, ECHO, IAC, DO, SGA)))
        self.check(bytes((IAC, WONT, ECHO)), b"", bytes((IAC, DONT, ECHO)))

    def test_it_agrees_to_linemode_and_sends_its_window_size(self):
        self.check(bytes((IAC, DO, LINEMODE, IAC, DO, NAWS)), b"",
                   bytes((IAC, WILL, LINEMODE, IAC, WILL, NAWS, IAC, SB, NAWS, 0, 100, 0, 40,
                          IAC, SE)))

    def test_it_refuses_what_it_does_not_know(self):
        self.check(bytes((IAC, DO, 24, IAC, WILL, 39, IAC, DONT, SGA)), b"",
                   bytes((IAC, WONT, 24, IAC, DONT, 39, IAC, WONT, SGA)))

    def test_a_subnegotiation_is_skipped(self):
        self.check(bytes((IAC, SB, LINEMODE, 1, 2, IAC, IAC, 3, IAC, SE)) + b">>> ", b">>> ", b"")

    def test_a_window_size_holding_255_is_escaped(self):
        self.assertEqual(TelnetCodec((255, 24)).naws(),
                         bytes((IAC, SB, NAWS, 0, IAC, IAC, 0, 24, IAC, SE)))

    def test_escape_doubles_iac_and_ends_a_bare_cr_with_nul(self):
        self.assertEqual(TelnetCodec.escape(b"a\xffb\rc\r\n"), b"a\xff\xffb\r\x00c\r\n")

    def test_plain_text_drops_terminal_escapes(self):
        self.assertEqual(plain_text(b"\x1bc\x1b[2K\x1b[4D>>> \x1b[36m1\x1b[0m\r\n2\r\n"),
                         ">>> 1\n2\n")


class ScriptedSocket:
    """What the manhole sends, chunk by chunk (b"" once it has closed), and what the
    client sent it."""

    def __init__(self, *chunks):
        self.chunks = list(chunks)
        self.sent = b""

    def settimeout(self, timeout):
        pass

    def recv(self, size):
        if not self.chunks:
            raise socket.timeout()
        return self.chunks.pop(0)

    def sendall(self, data):
        self.sent += data


LOGIN = (b"Username: ", bytes((IAC, WILL, ECHO)) + b"Password: ",
         bytes((IAC, WONT, ECHO, IAC, DO, NAWS)) + b"\x1bc>>> ")


class ClientTests(unittest.TestCase):
    def client(self, *chunks):
        return ManholeClient(ScriptedSocket(*chunks), timeout=1.0)

    def test_login_answers_the_negotiation_and_waits_for_the_prompt(self):
        client = self.client(*LOGIN)
        client.login("admin", "pw")
        sent = client.sock.sent
        self.assertIn(b"admin\r\n", sent)
        self.assertIn(bytes((IAC, DO, ECHO)), sent)
        self.assertIn(bytes((IAC, DONT, ECHO)), sent)
        self.assertIn(bytes((IAC, WILL, NAWS)), sent)

    def test_a_refused_login_is_login_refused(self):
        client = self.client(LOGIN[0], LOGIN[1], b"\r\nAuthentication failed\r\n", b"")
        with self.assertRaises(LoginRefused):
            client.login("admin", "wrong")

    def test_run_gives_what_the_line_printed_without_its_echo(self):
        client = self.client(b"\x1b[2K\x1b[4D>>> \x1b[36m6\x1b[0m*7", b"\r\n42\r\n>>> ")
        self.assertEqual(client.run("6*7"), "42")
        self.assertTrue(client.sock.sent.endswith(b"6*7\r\n"))

    def test_a_line_that_prints_nothing_gives_nothing(self):
        client = self.client(b">>> x = 1\r\n>>> ")
        self.assertEqual(client.run("x = 1"), "")

    def test_an_unfinished_statement_is_interrupted_and_an_error(self):
        client = self.client(b">>> def f():\r\n... ", b"\r\nKeyboardInterrupt\r\n>>> ")
        with self.assertRaises(ManholeError) as caught:
            client.run("def f():")
        self.assertIn("not a whole line", str(caught.exception))
        self.assertTrue(client.sock.sent.endswith(b"\x03"))

    def test_a_manhole_that_closes_or_goes_silent_is_an_error(self):
        with self.assertRaises(ManholeError) as caught:
            self.client(b">>> 1\r\n", b"").run("1")
        self.assertIn("closed the connection", str(caught.exception))
        with self.assertRaises(ManholeError) as caught:
            self.client(b">>> 1\r\n").run("1")
        self.assertIn("nothing expected", str(caught.exception))
