"""The real twistd's MQTT listening socket has an accept queue of at least 1024.

``ss -ltn`` shows a listening socket's backlog (as the kernel applied it, capped at
net.core.somaxconn) in its Send-Q column.
"""
import subprocess

from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase


@requires_mqttd("mqttd's listen backlog")
class ListenBacklogTests(BrokerTestCase):
    def test_the_listening_socket_backlog(self):
        out = subprocess.run(["ss", "-ltnH", f"sport = :{self.port}"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        (line,) = out.splitlines()
        state, _, backlog = line.split()[:3]
        self.assertEqual(state, "LISTEN")
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
        self.assertGreaterEqual(int(backlog), min(1024, somaxconn))
