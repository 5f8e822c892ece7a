"""SIGHUP rereads the config file: new limits apply to new connections and no connection
is dropped; a broken file changes nothing. broker.max_connections reaches every broker
that checks it, each worker's as well as the master's door. On the tree (the default)
and on the single process."""
from mqttd.edge.balancer import Balancer
from tests.integration.support.common import wait_for
from tests.integration.support.raw_client import ConnectionClosed
from tests.integration.support.reload import hup, rewrite_config
from tests.integration.support.testcase import BrokerTestCase

BASE = "[auth]\nallow_anonymous = true\n"
LIMITS = "[limits]\nallowlist = []\nmax_conn_per_ip = {cap}\n"


class _Reloading(BrokerTestCase):
    """Rewrite the config file and SIGHUP the broker (the tree's master)."""

    def rewrite(self, text):
        rewrite_config(self.broker, text)

    def hup(self, expect):
        hup(self.broker, expect)


class ReloadTests(_Reloading):
    config = BASE + LIMITS.format(cap=2)

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


CAP = "[broker]\nmax_connections = {cap}\n"
TREE = "[server]\nworkers = 2\n"


class MaxConnectionsReloadTests(_Reloading):
    """Raised, connections past the old cap get in, every one of them on one worker
    (whose broker checks the cap too); lowered, every open one stays and new ones are
    refused until fewer are open."""

    server = TREE
    brokers = 2  # that log the new cap: each worker's
    config = BASE + CAP.format(cap=3) + TREE

    def reload_cap(self, cap):
        said = f"broker.max_connections is now {cap} "
        self.rewrite(BASE + CAP.format(cap=cap) + self.server)
        self.hup("SIGHUP: configuration reloaded")
        wait_for(lambda: self.broker.output().count(said) == self.brokers, 5.0,
                 message=f"{self.brokers} x {said!r}", context=self.broker.tail)

    def homed(self, n):
        """``n`` client ids whose home is worker 1 (any id in the single process)."""
        homes = Balancer((1, 2))
        ids = []
        while len(ids) < n:
            client_id = self.new_id("home1-")
            if homes.home(client_id) == 1:
                ids.append(client_id)
        return ids

    def connect(self, client_id):
        """CONNACK 0 for ``client_id``, or False if the socket was closed without one
        (the door, or its broker, refused it)."""
        try:
            raw = self.raw()
            code, _ = raw.connect(client_id=client_id, timeout=3.0)
        except (ConnectionClosed, ConnectionResetError):
            return False
        self.assertEqual(code, 0)
        return raw

    def test_a_raised_cap_lets_more_in_on_one_worker_and_a_lowered_one_drops_no_one(self):
        ids = self.homed(7)
        clients = [self.connect(client_id) for client_id in ids[:3]]
        self.assertTrue(all(clients))
        self.assertFalse(self.connect(ids[3]))
        self.reload_cap(6)
        for client_id in ids[3:6]:  # past the old cap, all at home on worker 1
            raw = self.connect(client_id)
            self.assertTrue(raw, f"{client_id} refused after the cap was raised to 6")
            clients.append(raw)
        self.assertFalse(self.connect(ids[6]))
        self.reload_cap(2)
        self.assertTrue(all(raw.is_open() for raw in clients), "the reload dropped one")
        self.assertFalse(self.connect(ids[6]))
        for raw in clients[1:]:
            raw.close()
        # One left open, under the lowered cap: a new one gets in (once the closes have
        # been counted), and then no more.
        later = wait_for(lambda: self.connect(ids[6]), 10.0, message="a connection under "
                         "the lowered cap", context=self.broker.tail)
        self.assertTrue(clients[0].is_open() and later.is_open())
        self.assertFalse(self.connect(self.homed(1)[0]))


class OneProcessMaxConnectionsReloadTests(MaxConnectionsReloadTests):
    server = "[server]\nworkers = 0\n"
    brokers = 1
    config = BASE + CAP.format(cap=3) + server
