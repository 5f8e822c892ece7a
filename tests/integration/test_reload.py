"""SIGHUP rereads the config file: new limits apply to new connections and no connection
is dropped; a broken file changes nothing. On the tree (the default) and on the single
process."""
from tests.integration.support.reload import hup, rewrite_config
from tests.integration.support.testcase import BrokerTestCase

BASE = "[auth]\nallow_anonymous = true\n"
LIMITS = "[limits]\nallowlist = []\nmax_conn_per_ip = {cap}\n"


class ReloadTests(BrokerTestCase):
    config = BASE + LIMITS.format(cap=2)

    def rewrite(self, text):
        rewrite_config(self.broker, text)

    def hup(self, expect):
        hup(self.broker, expect)

    def connected(self, source, n):
        clients = []
        for i in range(n):
            raw = self.raw(source=source)
            code, _ = raw.connect(client_id=self.new_id(source))
            self.assertEqual(code, 0)
            clients.append(raw)
        return clients

    def refused(self, source):
        self.assertTrue(self.refused_at_accept(source, timeout=2.0),
                        f"a connection from {source} was admitted")

    def test_a_raised_cap_applies_at_once_without_dropping_anyone(self):
        first = self.connected("127.0.0.2", 2)
        self.refused("127.0.0.2")
        self.rewrite(BASE + LIMITS.format(cap=3))
        self.hup("SIGHUP: configuration reloaded")
        first += self.connected("127.0.0.2", 1)
        self.refused("127.0.0.2")
        for raw in first:
            self.assertTrue(raw.is_open(), "a connection was dropped by the reload")

    def test_a_ban_applies_to_new_connections(self):
        kept = self.connected("127.0.0.3", 1)
        self.rewrite(BASE + LIMITS.format(cap=2) + 'banned = ["127.0.0.3"]\n')
        self.hup("SIGHUP: configuration reloaded")
        self.refused("127.0.0.3")
        self.connected("127.0.0.4", 1)
        self.assertTrue(kept[0].is_open())

    def test_a_broken_file_changes_nothing(self):
        self.connected("127.0.0.5", 2)
        self.rewrite(BASE + "[limits]\nmax_conn_per_ip = 0.5\n")
        self.hup("configuration not reloaded")
        self.refused("127.0.0.5")


class OneProcessReloadTests(ReloadTests):
    config = ReloadTests.config + "[server]\nworkers = 0\n"

    def rewrite(self, text):
        super().rewrite(text + "[server]\nworkers = 0\n")
