"""Tenant isolation in the real appliance: two static users in two accounts (and one in
none), paho clients. Each account's clients see only their own account's messages,
under their own topics; a publish out of the namespace closes the connection unacked; a
subscription out of it gets 0x80; the rows in mqttd.db carry the account and the
device's own topic. Once in one process, once in the tree (``server.workers = 2``),
where the subscriber and the publisher are on different workers (the forwarded topics
are the mounted ones)."""
import os
import sqlite3

from mqttd.edge.balancer import Balancer
from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import cross_probes, owner, wait_for_children

USERS = """
[auth]
allow_anonymous = true

[[auth.users]]
username = "acme-1"
password = "pw-a"
account = "acme"

[[auth.users]]
username = "globex-1"
password = "pw-g"
account = "globex"
"""
CREDENTIALS = {"acme": ("acme-1", "pw-a"), "globex": ("globex-1", "pw-g"), None: (None, None)}
TOPIC = "/v1.6/devices/x"
_HOMES = Balancer((1, 2))


@requires_mqttd("accounts and their topic namespaces")
class TenantTests(BrokerTestCase):
    config = USERS

    def of(self, account, slot=None, prefix="c"):
        """A connected client of ``account`` (None: anonymous)."""
        username, password = CREDENTIALS[account]
        return self.client(self.new_id(prefix), username=username, password=password)

    def rows(self, where):
        """(client_id, account, topic, payload) of the rows stored so far ``where``."""
        db = sqlite3.connect(f"file:{self.broker.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT client_id, account, topic, payload FROM messages "
                              f"WHERE {where} ORDER BY rowid").fetchall()
        finally:
            db.close()

    def crossing(self, publisher, subscriber):
        cross_probes(publisher, subscriber, TOPIC, self.context)

    def test_cross_tenant_publish_and_subscribe_are_denied_and_rows_carry_the_account(self):
        acme_sub = self.of("acme", 2, "as")
        self.assertEqual(acme_sub.subscribe(TOPIC, 1), 1)
        self.assertEqual(acme_sub.subscribe("#", 1), 1)
        watcher = self.of(None, 2, "ws")
        self.assertEqual(watcher.subscribe("#", 1), 1)
        acme_pub = self.of("acme", 1, "ap")
        self.crossing(acme_pub, acme_sub)
        globex_pub = self.of("globex", 1, "gp")

        globex_pub.publish(TOPIC, b"globex data", 1)
        acme_pub.publish(TOPIC, b"acme data", 1)
        got = acme_sub.get_message()  # once for its two matching filters, its own topic
        self.assertEqual((got.topic, got.payload), (TOPIC, b"acme data"))
        acme_sub.no_message(0.3)
        watcher.no_message(0.1)  # a client without an account sees no tenant

        # Out of the namespace: refused, nothing stored.
        self.assertEqual(int(acme_sub.subscribe("$SYS/#", 1)), 0x80)
        self.assertEqual(int(acme_sub.subscribe("$a/globex/#", 1)), 0x80)
        self.assertEqual(int(watcher.subscribe("$a/acme/#", 1)), 0x80)
        acme_pub.publish_refused("$SYS/forged", b"x")
        anonymous = self.of(None, 1, "np")
        anonymous.publish_refused(f"$a/acme{TOPIC}", b"forged")

        rows = self.rows("payload != x'70726f6265'")  # the probes aside
        self.assertEqual([row[1:] for row in rows],
                         [("globex", TOPIC, b"globex data"), ("acme", TOPIC, b"acme data")])
        self.assertEqual(rows[0][0], globex_pub.client_id)
        self.assertIn("publish denied by namespace", self.broker.output())


@requires_mqttd("accounts and their topic namespaces in the process tree")
class TreeTenantTests(TenantTests):
    config = USERS + "\n[server]\nworkers = 2\n"

    def setUp(self):
        super().setUp()
        self.procs = wait_for_children(self.broker.process.pid,
                                       ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest"))

    def of(self, account, slot=None, prefix="c"):
        """A client of ``account`` whose connection worker ``slot`` holds (checked)."""
        username, password = CREDENTIALS[account]
        n = 0
        while True:
            n += 1
            client_id = f"{prefix}-{slot}-{n}-{os.getpid() % 10000}"
            if _HOMES.home(client_id) == slot:
                break
        client = self.client(client_id, username=username, password=password)
        pids = [self.procs["mqttd-worker-1"], self.procs["mqttd-worker-2"]]
        self.assertEqual(owner(client.client.socket(), pids),
                         self.procs[f"mqttd-worker-{slot}"], f"{client_id} not on {slot}")
        return client
