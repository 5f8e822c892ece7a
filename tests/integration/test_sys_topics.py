"""$SYS/broker topics on the real tree (``server.workers = 2``): a subscriber on either
worker gets mosquitto's topics from the whole tree's figures (clients/connected counts
the clients of both workers), retained for a later one; a "#" subscriber gets none, a
tenant's client is refused them (0x80), and none is stored in SQLite."""
import sqlite3
import time

from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import client_on, wait_for_children

NAMES = ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")
CONNECTED = "$SYS/broker/clients/connected"


@requires_mqttd("mqttd's $SYS topics")
class SysTopicsTreeTests(BrokerTestCase):
    # A user of account "acme", whose clients may not read $ topics.
    config = ('[auth]\nallow_anonymous = true\n[[auth.users]]\nusername = "acme-1"\n'
              'password = "pw-a"\naccount = "acme"\n'
              "[server]\nworkers = 2\n[manage]\nsys_interval = 1.0\n")

    def until(self, client, topic, payload, timeout=15.0):
        """The first message of ``client`` on ``topic`` with ``payload``."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                message = client.get_message(timeout=max(0.01, deadline - time.monotonic()))
            except AssertionError:
                break
            if message.topic == topic and message.payload == payload:
                return message
            seen.append(message)
        raise AssertionError(f"no {topic} = {payload!r} within {timeout} s; {seen[-5:]}")

    def test_a_sys_subscriber_on_either_worker_gets_the_trees_connected_clients(self):
        procs = wait_for_children(self.broker.process.pid, NAMES)
        one = client_on(self, 1, "sys", procs)
        two = client_on(self, 2, "sys", procs)
        one.subscribe("$SYS/broker/#")
        two.subscribe(CONNECTED)
        everyone = self.client()
        everyone.subscribe("#")
        others = [client_on(self, slot, f"dev{n}", procs)
                  for n, slot in enumerate((1, 2, 2))]
        clients = 3 + len(others)  # the two $SYS subscribers and "#" count too
        self.until(one, CONNECTED, str(clients).encode())
        self.until(two, CONNECTED, str(clients).encode())
        others[0].disconnect()
        self.until(two, CONNECTED, str(clients - 1).encode())
        late = self.client()
        late.subscribe("$SYS/broker/version")
        version = late.get_message()
        self.assertTrue(version.retain)
        self.assertTrue(version.payload.startswith(b"mqttd version "), version.payload)
        everyone.no_message(timeout=1.5)  # a whole interval: "#" matches no $SYS topic
        tenant = self.client(username="acme-1", password="pw-a")
        self.assertEqual(tenant.subscribe("$SYS/#"), 0x80)
        db = sqlite3.connect(f"file:{self.broker.db_path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT count(*) FROM messages WHERE topic LIKE '$SYS%'").fetchone()
        finally:
            db.close()
        self.assertEqual(rows, (0,))
