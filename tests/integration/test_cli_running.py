"""The operator's ``mqttd`` command on a running appliance (issue 13, point 2): it writes
the gate's tables beside the ingest's commits, in the same WAL database, and the
appliance goes on storing and acknowledging as before.

(That the running gate applies the change within a second is the gate's wiring, tested
with it.)
"""
import json
import os
import subprocess
import sys

from twisted.trial import unittest

from tests.integration.support.database import stored_messages
from tests.integration.support.mosquitto_clients import mosquitto_pub
from tests.integration.support.process import requires_mqttd, start_broker


def mqttd_cli(data_dir, *argv):
    """The installed ``mqttd`` console script; CompletedProcess (status checked by the
    caller)."""
    script = os.path.join(os.path.dirname(sys.executable), "mqttd")
    return subprocess.run([script, *argv, "--data-dir", data_dir], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MQTTD_CONFIG=""))


@requires_mqttd("mqttd's own database and command")
class RunningApplianceTests(unittest.TestCase):
    def test_accounts_and_tokens_made_while_messages_commit(self):
        broker = start_broker(self)
        for i in range(3):
            mosquitto_pub(broker.port, "t/before", f"before-{i}", qos=1, client_id=f"pub-{i}")
            for argv in (("accounts", "add", f"acme-{i}"), ("tokens", "add", f"acme-{i}"),
                         ("bans", "add", "clientid", f"flappy-{i}", "--for", "60")):
                run = mqttd_cli(broker.data_dir, *argv)
                self.assertEqual(run.returncode, 0, run.stderr + broker.tail())
            mosquitto_pub(broker.port, "t/after", f"after-{i}", qos=1, client_id=f"pub-{i}")
        listed = mqttd_cli(broker.data_dir, "tokens", "list", "--json")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertEqual(sorted(t["account"] for t in json.loads(listed.stdout)["tokens"]),
                         ["acme-0", "acme-1", "acme-2"])
        payloads = sorted(bytes(row[1]).decode() for row in stored_messages(broker.db_path))
        self.assertEqual(payloads, sorted([f"before-{i}" for i in range(3)]
                                          + [f"after-{i}" for i in range(3)]))
        self.assertTrue(broker.alive())
