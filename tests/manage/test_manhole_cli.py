"""``mqttd manhole``: who it logs in as, from which file, and its one line when it
cannot (the session itself is driven against the real appliance in
tests/integration/test_manhole.py)."""
import io
import os
import sys

from twisted.trial import unittest

from mqttd.manage.cli import main


class ManholeCommandTests(unittest.TestCase):
    def run_cli(self, *argv):
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(["manhole", *argv], stdout, stderr, environ={"MQTTD_CONFIG": ""})
        return status, stdout.getvalue(), stderr.getvalue()

    def passwords(self, text):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_a_user_not_in_the_file_is_one_line(self):
        path = self.passwords("admin:pw\n")
        status, out, err = self.run_cli("--password-file", path, "--user", "ops", "-e", "1")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("no user 'ops' in", err)

    def test_nothing_listening_is_one_line(self):
        path = self.passwords("admin:pw\n")
        status, _, err = self.run_cli("--password-file", path, "--endpoint",
                                      "tcp:1:interface=127.0.0.1", "-e", "help()")
        self.assertEqual(status, 1)
        self.assertIn("cannot connect to the manhole at ('127.0.0.1', 1)", err)
        self.assertEqual(len(err.splitlines()), 1)

    def test_an_unreadable_password_file_is_one_line(self):
        status, _, err = self.run_cli("--password-file", "/nonexistent/manhole.passwd",
                                      "-e", "1")
        self.assertEqual(status, 1)
        self.assertIn("cannot read '/nonexistent/manhole.passwd'", err)

    def test_no_password_file_and_no_terminal(self):
        self.patch(sys, "stdin", io.StringIO())  # as from a script, even under a terminal
        status, _, err = self.run_cli("-e", "1")
        self.assertEqual(status, 1)
        self.assertIn("no password file", err)

    def test_an_ephemeral_endpoint_cannot_be_reached(self):
        path = self.passwords("admin:pw\n")
        status, _, err = self.run_cli("--password-file", path, "--endpoint",
                                      "tcp:0:interface=127.0.0.1", "-e", "1")
        self.assertEqual(status, 1)
        self.assertIn("names no fixed port", err)
