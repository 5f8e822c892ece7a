"""The manhole's password file and checker: what start-up accepts and refuses, and a
login judged in constant time whoever asks."""
import os

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial import unittest

from mqttd.errors import ConfigError
from mqttd.manage.passwords import PasswordChecker, read_password_file
from tests.support.logs import capture_logs


class PasswordFileTests(unittest.TestCase):
    def write(self, data, mode=0o600):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def test_the_packages_file_and_comments(self):
        path = self.write(b"# made by postinst\n\nadmin:Ab3xYz:with:colons\r\nops:pw\n")
        self.assertEqual(read_password_file(path),
                         {"admin": b"Ab3xYz:with:colons", "ops": b"pw"})

    def test_a_malformed_line_names_its_number_and_never_the_password(self):
        path = self.write(b"admin:good\nsecretwithoutcolon\n")
        with self.assertRaises(ConfigError) as caught:
            read_password_file(path)
        self.assertIn("line 2: not USER:PASSWORD", str(caught.exception))
        self.assertNotIn("secretwithoutcolon", str(caught.exception))
        with self.assertRaises(ConfigError):
            read_password_file(self.write(b"admin:\n"))
        with self.assertRaises(ConfigError):
            read_password_file(self.write(b":pw\n"))

    def test_an_empty_or_missing_file_stops_start_up(self):
        with self.assertRaises(ConfigError) as caught:
            read_password_file(self.write(b"# nothing\n"))
        self.assertIn("manage.manhole_password_file", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            read_password_file(os.path.join(self.mktemp(), "absent"))
        self.assertIn("cannot read", str(caught.exception))

    def test_a_file_others_may_read_is_warned_about(self):
        events = capture_logs(self)
        read_password_file(self.write(b"admin:pw\n", 0o644))
        self.assertEqual(len([e for e in events if "any user" in e.get("log_format", "")]), 1)
        events.clear()
        read_password_file(self.write(b"admin:pw\n", 0o640))
        self.assertEqual([e for e in events if "any user" in e.get("log_format", "")], [])


class CheckerTests(unittest.TestCase):
    def setUp(self):
        self.checker = PasswordChecker({"admin": b"pw"})

    def test_the_right_password_gives_the_user(self):
        d = self.checker.requestAvatarId(UsernamePassword(b"admin", b"pw"))
        self.assertEqual(self.successResultOf(d), "admin")

    def test_a_wrong_password_or_user_is_unauthorized(self):
        for user, password in ((b"admin", b"pW"), (b"admin", b""), (b"root", b"pw"),
                               (b"admin", b"pw\x00")):
            self.failureResultOf(self.checker.requestAvatarId(
                UsernamePassword(user, password)), UnauthorizedLogin)
