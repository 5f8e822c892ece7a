"""Two real appliances sharing the gate's state in a real, private redis-server
(``[cluster]``, mqttd.cluster): one the process tree, one the single process, each with
its own data dir, both pointed at the same Redis.

An account's quota holds across both (also when every client connects at once), a ban
made with the CLI on one kicks and refuses on the other, a client flapping between them
is banned by their disconnects together, and Redis killed mid-run leaves both serving
(``cluster_redis_up`` 0) until it is back, when the quota is shared again.
"""
import sqlite3
import threading

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.cli import cli_ok, new_token
from tests.integration.support.common import wait_for
from tests.integration.support.metrics import scrape, series
from tests.integration.support.paho_client import PahoClient
from tests.integration.support.process import start_broker
from tests.integration.support.raw_client import ConnectionClosed, RawClient
from tests.integration.support.redis import start_redis

ACCEPTED, NOT_AUTHORIZED = 0, 5


def _config(workers, node, redis_url):
    return (f"[server]\nworkers = {workers}\n"
            "[auth]\nallow_anonymous = true\nreload_interval = 0.2\n"
            "[flapping_detect]\nmax_count = 4\nwindow_time = 30.0\nban_time = 3.0\n"
            f"[cluster]\nredis_url = \"{redis_url}\"\nnode_name = \"{node}\"\n"
            "poll_interval = 0.1\nreconnect_initial = 0.1\nreconnect_max = 0.5\n"
            "node_ttl = 2.0\n")


class ClusterTests(SynchronousTestCase):
    def setUp(self):
        self.redis = start_redis(self)
        self.a = start_broker(self, _config(1, "node-a", self.redis.url))  # the tree
        self.b = start_broker(self, _config(0, "node-b", self.redis.url))  # one process
        self._ids = 0
        for node in (self.a, self.b):
            self.wait_redis_up(node, 1)

    def context(self):
        return f"{self.a.tail()}\n{self.b.tail()}"

    def wait_redis_up(self, node, up):
        wait_for(lambda: node.metrics_url and scrape(node.metrics_url).get(
                 series("cluster_redis_up")) == up, timeout=10, interval=0.1,
                 message=f"cluster_redis_up {up} on {node.workdir}", context=self.context)

    def raw(self, node):
        raw = RawClient(node.port)
        self.addCleanup(raw.close)
        return raw

    def connack(self, node, client_id, username=None):
        """The CONNACK code of a CONNECT to ``node``, and its client (kept open)."""
        raw = self.raw(node)
        try:
            code, _ = raw.connect(client_id=client_id, username=username)
        except (ConnectionClosed, ConnectionResetError):
            return None, raw
        return code, raw

    def shared_account(self, account, max_connections):
        """``account`` on both nodes (accounts are each node's own) with one token."""
        for node in (self.a, self.b):
            cli_ok(self, node, "accounts", "add", account, "--max-connections",
                   str(max_connections))
        token = new_token(self, self.a, account)
        with sqlite3.connect(self.a.db_path) as source:
            row = source.execute("SELECT token_hash, prefix, account, active, created "
                                 "FROM tokens WHERE account = ?", (account,)).fetchone()
        with sqlite3.connect(self.b.db_path, timeout=10) as target:
            target.execute("INSERT INTO tokens (token_hash, prefix, account, active, "
                           "created) VALUES (?, ?, ?, ?, ?)", row)
        return token

    # -- quotas ------------------------------------------------------------------------

    def test_an_account_quota_holds_across_both_nodes(self):
        token = self.shared_account("acme", 2)
        first, held_a = self.connack(self.a, "q-0", token)
        second, _ = self.connack(self.b, "q-1", token)
        self.assertEqual((first, second), (ACCEPTED, ACCEPTED))
        self.assertEqual(self.connack(self.a, "q-2", token)[0], NOT_AUTHORIZED)
        self.assertEqual(self.connack(self.b, "q-2", token)[0], NOT_AUTHORIZED)
        # A takeover on its own node keeps its seat.
        self.assertEqual(self.connack(self.b, "q-1", token)[0], ACCEPTED)
        held_a.close()  # a seat free on A lets the third in on B
        wait_for(lambda: self.connack(self.b, "q-2", token)[0] == ACCEPTED, timeout=5,
                 interval=0.1, message="a seat free again", context=self.context)
        samples = scrape(self.b.metrics_url)
        self.assertGreaterEqual(samples[series("edge_gate_refused_total", reason="quota")], 1)

    def test_concurrent_connects_on_both_nodes_get_exactly_the_quota(self):
        token = self.shared_account("rush", 3)
        codes, barrier = {}, threading.Barrier(12)
        clients = []

        def connect(n):
            node = (self.a, self.b)[n % 2]
            raw = RawClient(node.port, timeout=10)
            clients.append(raw)
            barrier.wait(timeout=10)
            try:
                codes[n] = raw.connect(client_id=f"rush-{n}", username=token, timeout=10)[0]
            except (ConnectionClosed, ConnectionResetError) as e:
                codes[n] = repr(e)

        threads = [threading.Thread(target=connect, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for raw in clients:
            self.addCleanup(raw.close)
        self.assertEqual(sorted(codes.values()), [ACCEPTED] * 3 + [NOT_AUTHORIZED] * 9,
                         self.context())

    def test_a_dead_nodes_seats_are_given_back_once_its_heartbeat_lapsed(self):
        token = self.shared_account("acme", 2)
        held = [self.connack(self.a, f"q-{n}", token)[0] for n in range(2)]
        self.assertEqual(held, [ACCEPTED, ACCEPTED])
        self.a.sigkill()  # no clean stop: its seats stay in Redis until node_ttl (2 s)
        self.assertEqual(self.connack(self.b, "q-b", token)[0], NOT_AUTHORIZED)
        wait_for(lambda: self.connack(self.b, "q-b", token)[0] == ACCEPTED, timeout=10,
                 interval=0.2, message="A's seats given back", context=self.context)

    # -- bans ----------------------------------------------------------------------------

    def test_a_ban_made_on_one_node_kicks_and_refuses_on_the_other(self):
        code, live = self.connack(self.b, "naughty")
        self.assertEqual(code, ACCEPTED)
        code, bystander = self.connack(self.b, "nice")
        self.assertEqual(code, ACCEPTED)
        cli_ok(self, self.a, "bans", "add", "clientid", "naughty", "--reason", "cluster test")
        live.wait_closed(timeout=5)
        self.assertTrue(bystander.is_open(timeout=0.3))
        self.assertEqual(self.connack(self.b, "naughty")[0], NOT_AUTHORIZED)
        self.assertEqual(self.connack(self.a, "naughty")[0], NOT_AUTHORIZED)
        # B keeps it in its own table too (enforced there across a restart).
        wait_for(lambda: "cluster test" in cli_ok(self, self.b, "bans", "list"), timeout=5,
                 interval=0.1, message="the ban in B's table", context=self.context)
        cli_ok(self, self.a, "bans", "rm", "clientid", "naughty")
        wait_for(lambda: self.connack(self.b, "naughty")[0] == ACCEPTED, timeout=5,
                 interval=0.1, message="the ban removed on B", context=self.context)
        wait_for(lambda: "naughty" not in cli_ok(self, self.b, "bans", "list"), timeout=5,
                 interval=0.1, message="the ban gone from B's table", context=self.context)

    # -- flapping ------------------------------------------------------------------------

    def test_a_client_flapping_between_the_nodes_is_banned(self):
        # max_count 4: two disconnects on each node, which alone would ban nothing.
        for node in (self.a, self.b, self.a, self.b):
            code, raw = self.connack(node, "flappy")
            self.assertEqual(code, ACCEPTED)
            raw.close()
        for node in (self.a, self.b):
            wait_for(lambda node=node: self.connack(node, "flappy")[0] == NOT_AUTHORIZED,
                     timeout=5, interval=0.1, message="the flapping client banned",
                     context=self.context)
        self.assertEqual(self.connack(self.b, "calm")[0], ACCEPTED)
        self.assertIn("flapping: banned clientid flappy", self.a.output() + self.b.output())

    # -- Redis away ----------------------------------------------------------------------

    def test_redis_killed_both_keep_serving_and_share_again_when_it_is_back(self):
        token = self.shared_account("acme", 2)
        self.redis.kill()
        for node in (self.a, self.b):
            self.wait_redis_up(node, 0)
        # Both serve: connects (tokens too) and acknowledged publishes.
        for node in (self.a, self.b):
            client = PahoClient(node.port, client_id=f"pub-{node.port}",
                                context=self.context)
            self.addCleanup(client.close)
            client.connect()
            client.publish("t/outage", b"still here", qos=1)  # acked: committed
        held = [self.connack(self.a, f"q-{n}", token) for n in range(2)]
        self.assertEqual([code for code, _ in held], [ACCEPTED, ACCEPTED])
        self.redis.start()  # back, empty
        for node in (self.a, self.b):
            self.wait_redis_up(node, 1)
        # A wrote its two seats again: the account is full on B too.
        wait_for(lambda: self.connack(self.b, "q-b", token)[0] == NOT_AUTHORIZED, timeout=5,
                 interval=0.1, message="A's seats counted again on B", context=self.context)
        cli_ok(self, self.a, "bans", "add", "clientid", "after", "--reason", "back")
        wait_for(lambda: self.connack(self.b, "after")[0] == NOT_AUTHORIZED, timeout=5,
                 interval=0.1, message="bans shared again", context=self.context)
        for node in (self.a, self.b):
            self.assertIn("lost Redis at", node.output())
            self.assertIn("is back after", node.output())
