"""The manhole client's telnet side, byte by byte: what it answers to the server's option
requests, what it passes on as data, and how it escapes what it sends."""
from twisted.trial import unittest

from mqttd.manage.manhole_client import (DO, DONT, ECHO, IAC, LINEMODE, NAWS, SB, SE, SGA,
                                         WILL, WONT, TelnetCodec, plain_text)


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
