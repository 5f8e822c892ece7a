"""The packaged /usr/bin/mqttd (debian/mqttd-wrapper) sends the operator's commands to
the CLI and everything else to `twistd mqttd`.

packaging/check-deb.sh runs the installed one; this runs the source with the venv's
path pointed at stand-ins that say how they were called, so a wrapper that loses a
command fails in the unit suite, without building the package.
"""
import os
import subprocess

from twisted.trial import unittest

WRAPPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "debian", "mqttd-wrapper")
VENV = "/opt/venvs/mqttd"


class WrapperTests(unittest.TestCase):
    def setUp(self):
        venv = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(venv, "bin"))
        for name in ("mqttd", "twistd"):
            path = os.path.join(venv, "bin", name)
            with open(path, "w") as f:
                f.write(f'#!/bin/sh\necho {name} "$@"\n')
            os.chmod(path, 0o755)
        with open(WRAPPER, encoding="utf-8") as f:
            source = f.read()
        self.assertIn(VENV + "/bin/", source)
        self.wrapper = os.path.join(venv, "wrapper")
        with open(self.wrapper, "w") as f:
            f.write(source.replace(VENV, venv))
        os.chmod(self.wrapper, 0o755)

    def called(self, *argv):
        return subprocess.run([self.wrapper, *argv], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    def test_the_operators_commands_go_to_the_cli(self):
        self.assertEqual(self.called("accounts", "add", "acme"), "mqttd accounts add acme")
        self.assertEqual(self.called("tokens", "add", "acme", "--json"),
                         "mqttd tokens add acme --json")
        self.assertEqual(self.called("bans", "list"), "mqttd bans list")
        self.assertEqual(self.called("report", "--json"), "mqttd report --json")
        self.assertEqual(self.called("manhole", "-e", "help()"), "mqttd manhole -e help()")

    def test_the_rest_runs_the_broker(self):
        self.assertEqual(self.called("--config", "/etc/mqttd/mqttd.toml"),
                         "twistd --nodaemon --pidfile= mqttd --config /etc/mqttd/mqttd.toml")
        self.assertEqual(self.called(), "twistd --nodaemon --pidfile= mqttd")
        self.assertEqual(self.called("--data-dir", "accounts"),
                         "twistd --nodaemon --pidfile= mqttd --data-dir accounts")
