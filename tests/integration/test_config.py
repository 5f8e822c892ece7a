"""A bad configuration stops twistd quickly, non-zero, with one line naming the key."""
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.common import free_port
from tests.integration.support.process import requires_mqttd, run_twistd_mqttd

CASES = [
    ("[broker]\nmax_inflight = 0\n", "broker.max_inflight: must be 1..65535, got 0"),
    ("[broker]\nidle_timeout = \"soon\"\n", "broker.idle_timeout: must be a number, got 'soon'"),
    ("[broker]\nmax_inflihgt = 3\n", "broker.max_inflihgt: unknown key"),
    ("[brokr]\nmax_inflight = 3\n", "brokr: unknown section"),
    ("[auth]\nallow_anonymous = \"yes\"\n", "auth.allow_anonymous: must be true or false, got 'yes'"),
    ("[[auth.users]]\nusername = \"\"\npassword = \"p\"\n", "auth.users[0].username: must not be empty"),
    ("[broker\n", "invalid TOML"),
]


@requires_mqttd("mqttd's configuration file")
class BadConfigTests(SynchronousTestCase):
    def run_mqttd(self, config_text, extra=()):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        path = os.path.join(workdir, "mqttd.toml")
        with open(path, "w") as f:
            f.write(config_text)
        args = ["--config", path, "--listen", f"tcp:{free_port()}:interface=127.0.0.1",
                "--data-dir", os.path.join(workdir, "data"), *extra]
        # A refused config exits at once; the timeout only catches one that started.
        return run_twistd_mqttd(args, cwd=workdir, timeout=30)

    def assertRefused(self, config_text, expected, extra=()):
        result = self.run_mqttd(config_text, extra)
        output = (result.stdout + result.stderr).strip()
        where = f"config {config_text!r}: exit {result.returncode}, output:\n{output}"
        self.assertNotEqual(result.returncode, 0, where)
        lines = [line for line in output.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, f"expected one line; {where}")
        self.assertIn(expected, lines[0], where)
        self.assertNotIn("Traceback", output, where)
        return lines[0]

    def test_bad_values_name_the_key(self):
        for config_text, expected in CASES:
            self.assertRefused(config_text, expected)

    def test_exact_message_for_max_inflight(self):
        line = self.assertRefused("[broker]\nmax_inflight = 0\n", "")
        self.assertEqual(line, "mqttd: configuration error: broker.max_inflight: must be 1..65535, got 0")

    def test_missing_config_file(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        missing = os.path.join(workdir, "nope.toml")
        result = run_twistd_mqttd(["--config", missing], cwd=workdir, timeout=30)
        output = (result.stdout + result.stderr).strip()
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn("cannot read config", output)
        self.assertIn(missing, output)

    def test_bad_listen_endpoint(self):
        result = self.run_mqttd("[auth]\nallow_anonymous = true\n", extra=["--listen", "bogus:1"])
        output = (result.stdout + result.stderr).strip()
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn("server.listen[1]", output)
        self.assertNotIn("Traceback", output)
