"""Bans on the real appliance (issue 13, point 7): made with ``mqttd bans``, enforced at
accept (an IP) and at CONNECT (a client id, a token by its hash), kicking what they
match, kept across a restart, lifted by ``bans rm``."""
from mqttd.store.gate_records import token_hash
from tests.integration.support.cli import cli_ok, new_token
from tests.integration.support.common import wait_for
from tests.integration.support.testcase import BrokerTestCase

ACCEPTED, NOT_AUTHORIZED = 0, 5
BANNED_IP = "127.0.0.31"
CONFIG = "[auth]\nallow_anonymous = true\nreload_interval = 0.2\n"


class _BanCases:
    def test_a_client_id_ban_kicks_the_live_client_and_refuses_it_until_removed(self):
        live = self.raw()
        self.assertEqual(live.connect(client_id="naughty")[0], ACCEPTED)
        bystander = self.raw()
        self.assertEqual(bystander.connect(client_id="nice")[0], ACCEPTED)
        cli_ok(self, self.broker, "bans", "add", "clientid", "naughty", "--reason", "test")
        live.wait_closed(timeout=5)
        self.assertTrue(bystander.is_open(timeout=0.3))
        self.assertEqual(self.raw().connect(client_id="naughty")[0], NOT_AUTHORIZED)
        self.assertIn("test", cli_ok(self, self.broker, "bans", "list"))
        cli_ok(self, self.broker, "bans", "rm", "clientid", "naughty")
        wait_for(lambda: self.raw().connect(client_id="naughty")[0] == ACCEPTED, timeout=5,
                 message="the ban removed", context=self.context)

    def test_a_token_ban_holds_its_hash_kicks_and_refuses_the_token(self):
        cli_ok(self, self.broker, "accounts", "add", "acme")
        token = new_token(self, self.broker, "acme")
        live = self.raw()
        self.assertEqual(live.connect(client_id="dev-1", username=token)[0], ACCEPTED)
        added = cli_ok(self, self.broker, "bans", "add", "username", token)
        live.wait_closed(timeout=5)
        self.assertEqual(self.raw().connect(client_id="dev-2", username=token)[0],
                         NOT_AUTHORIZED)
        listed = cli_ok(self, self.broker, "bans", "list")
        self.assertIn(token_hash(token), listed)
        for text in (added, listed, self.broker.output()):
            self.assertNotIn(token, text)
        cli_ok(self, self.broker, "bans", "rm", "username", token)
        wait_for(lambda: self.raw().connect(client_id="dev-3", username=token)[0] == ACCEPTED,
                 timeout=5, message="the token's ban removed", context=self.context)

    def test_an_ip_ban_refuses_at_accept_and_survives_a_restart(self):
        live = self.raw(source=BANNED_IP)
        self.assertEqual(live.connect(client_id="from-31")[0], ACCEPTED)
        cli_ok(self, self.broker, "bans", "add", "ip", BANNED_IP, "--for", "600")
        live.wait_closed(timeout=5)
        wait_for(lambda: self.refused_at_accept(BANNED_IP), timeout=5,
                 message="the banned address refused at accept", context=self.context)
        self.assertEqual(self.raw(source="127.0.0.32").connect(client_id="from-32")[0],
                         ACCEPTED)
        self.broker.stop()
        self.broker.start()
        self.port = self.broker.port
        self.assertTrue(self.refused_at_accept(BANNED_IP))
        self.assertEqual(self.raw().connect(client_id="after-restart")[0], ACCEPTED)


class TreeBanTests(_BanCases, BrokerTestCase):
    config = "[server]\nworkers = 2\n" + CONFIG


class SingleBanTests(_BanCases, BrokerTestCase):
    config = "[server]\nworkers = 0\n" + CONFIG
