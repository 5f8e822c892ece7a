"""The gate as the broker's authenticator: the broker's protocol and Admission ask it,
a token device connects with its account, the ticket is released when the connection
ends (freeing its quota seat, feeding the flapping detector), a refusal is the CONNACK
code, a takeover keeps one seat, and a kick closes the live connection."""
from mqttd.codec import Connack
from mqttd.edge.gate_sync import GateSync
from tests.support.broker import Client, Harness
from tests.support.gate import TOKEN, GateCase


class GateInBrokerCase(GateCase):
    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN, account="acme", max_connections=2)
        self.gate_ = self.gate(rate_per_token=0.0)
        self.h = Harness(authenticator=self.gate_)

    def device(self, client_id):
        c = Client(self.h)
        return c, c.connect(client_id, username=TOKEN)


class AuthenticatorTests(GateInBrokerCase):
    def test_a_token_device_connects_and_its_ticket_is_released_at_the_end(self):
        c, connack = self.device("dev-1")
        self.assertEqual(connack, Connack(False, 0))
        ticket = self.gate_.tickets.get("dev-1", "acme")
        self.assertEqual((ticket.account, ticket.host), ("acme", "192.0.2.7"))
        c.disconnect()
        self.assertTrue(ticket.released)
        self.assertEqual(len(self.gate_.tickets), 0)
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 0)

    def test_a_refusal_is_its_connack_code_and_a_close(self):
        c = Client(self.h)
        self.assertEqual(c.connect("dev-1", username="unknown-token"), Connack(False, 0x05))
        self.assertTrue(c.closed)
        self.assertEqual(self.h.broker.sessions, {})

    def test_the_quota_through_the_broker(self):
        self.device("dev-1")
        self.device("dev-2")
        c, connack = self.device("dev-3")
        self.assertEqual(connack, Connack(False, 0x05))
        self.assertEqual(self.refused("quota"), 1)

    def test_a_takeover_through_the_broker_keeps_one_seat(self):
        old, _ = self.device("dev-1")
        new, connack = self.device("dev-1")
        self.assertEqual(connack, Connack(False, 0))
        self.assertTrue(old.closed)
        old.lose()
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 1)
        self.assertEqual(self.device("dev-2")[1], Connack(False, 0))

    def test_flapping_through_the_broker(self):
        self.flapping_config(max_count=3, window_time=60.0, ban_time=300.0)
        self.gate_ = self.gate(rate_per_token=0.0)
        self.h = Harness(authenticator=self.gate_)
        for _ in range(3):
            c, connack = self.device("flappy")
            self.assertEqual(connack, Connack(False, 0))
            c.disconnect()
        self.assertEqual(self.device("flappy")[1], Connack(False, 0x05))
        self.assertEqual(self.refused("banned"), 1)


class KickTests(GateInBrokerCase):
    def test_a_revoked_token_kicks_the_live_connection(self):
        self.gate_.kick = lambda client_id, reason, account=None: (
            self.h.broker.taken_elsewhere(client_id, account))
        sync = GateSync(self.clock, self.store, self.gate_, self.metrics, 0.5)
        self.successResultOf(sync.start())
        self.addCleanup(sync.stop)
        c, _ = self.device("dev-1")
        self.store.revoke(TOKEN)
        self.clock.advance(0.5)
        self.assertTrue(c.closed)
        c.lose()
        self.assertEqual(len(self.gate_.tickets), 0)
        again = Client(self.h)
        self.assertEqual(again.connect("dev-1", username=TOKEN), Connack(False, 0x05))
