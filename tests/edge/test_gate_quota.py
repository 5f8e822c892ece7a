"""The per-account connection quota: distinct client ids, exact at N and N+1, a seat
freed by a release, a takeover by the same client id counted once; tickets for every
accepted connection, released once."""
from mqttd.codec.packets import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED
from tests.support.gate import TOKEN, GateCase

OTHER = "tok-" + "b" * 40


class QuotaTests(GateCase):
    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN, account="acme", max_connections=3)
        self.gate_ = self.gate(rate_per_token=0.0)

    def admit(self, client_id, token=TOKEN):
        return self.connect(self.gate_, client_id=client_id, username=token)

    def test_n_are_admitted_and_the_next_is_refused(self):
        tickets = [self.admit(f"dev-{i}").ticket for i in range(3)]
        self.assertNotIn(None, tickets)
        result = self.admit("dev-3")
        self.assertEqual((result.code, result.reason, result.ticket),
                         (CONNACK_NOT_AUTHORIZED, "quota", None))
        self.assertEqual(self.refused("quota"), 1)
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 3)
        (line,) = self.logged("at the gate")
        self.assertIn("max_connections 3 of account acme", line)

    def test_admitted_again_after_one_disconnects(self):
        tickets = [self.admit(f"dev-{i}").ticket for i in range(3)]
        self.assertEqual(self.admit("dev-3").reason, "quota")
        tickets[1].release()
        self.assertEqual(self.admit("dev-3").code, CONNACK_ACCEPTED)
        self.assertEqual(self.admit("dev-4").reason, "quota")

    def test_a_takeover_by_the_same_client_id_keeps_the_count(self):
        old = [self.admit(f"dev-{i}").ticket for i in range(3)]
        again = self.admit("dev-0")  # the same device reconnects before its old one ended
        self.assertEqual(again.code, CONNACK_ACCEPTED)
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 3)
        old[0].release()  # the old connection is taken over: the seat stays the new one's
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 3)
        self.assertEqual(self.admit("dev-9").reason, "quota")
        again.ticket.release()
        self.assertEqual(self.admit("dev-9").code, CONNACK_ACCEPTED)
        self.assertEqual(self.gate_.tickets.get("dev-9", "acme").client_id, "dev-9")

    def test_release_is_idempotent(self):
        tickets = [self.admit(f"dev-{i}").ticket for i in range(3)]
        for _ in range(3):
            tickets[0].release()
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 2)
        self.assertEqual(self.admit("dev-3").code, CONNACK_ACCEPTED)
        self.assertEqual(self.admit("dev-4").reason, "quota")
        self.assertEqual(self.metrics.edge_gate_tickets_open, 3)

    def test_concurrent_lookups_take_seats_one_at_a_time(self):
        self.store.hold = True
        gate = self.gate(rate_per_token=0.0)
        waiting = [self.connecting(gate, client_id=f"dev-{i}") for i in range(5)]
        self.store.finish_lookups()
        self.assertEqual([self.successResultOf(d).reason for d in waiting],
                         [None, None, None, "quota", "quota"])

    def test_the_quota_is_per_account_and_none_is_no_quota(self):
        self.store.put_token(OTHER, account="free", max_connections=None)
        gate = self.gate(rate_per_token=0.0)
        for i in range(3):
            self.connect(gate, client_id=f"a-{i}")
        self.assertEqual([self.connect(gate, client_id=f"f-{i}", username=OTHER).code
                          for i in range(50)], [CONNACK_ACCEPTED] * 50)
        self.assertEqual(self.connect(gate, client_id="a-9").reason, "quota")

    def test_a_quota_of_zero_admits_nobody(self):
        self.store.put_token(OTHER, account="closed", max_connections=0)
        self.assertEqual(self.connect(self.gate(), username=OTHER).reason, "quota")


class TicketTests(GateCase):
    def test_static_users_and_anonymous_get_tickets_too(self):
        gate = self.gate(allow_anonymous=True)
        anonymous = self.connect(gate, client_id="anon", username=None).ticket
        user = self.connect(gate, client_id="u", username="alice", password=b"secret").ticket
        self.assertEqual((anonymous.username, anonymous.account, anonymous.token),
                         (None, None, None))
        self.assertEqual((user.username, user.account, user.token), ("alice", None, None))
        self.assertEqual(len(gate.tickets), 2)
        self.assertEqual(self.metrics.edge_gate_tickets_open, 2)
        anonymous.release()
        user.release()
        self.assertEqual((len(gate.tickets), self.metrics.edge_gate_tickets_open), (0, 0))

    def test_live_tokens_are_those_of_live_tickets(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        ticket = self.connect(gate).ticket
        self.connect(gate, client_id="u", username="alice", password=b"secret")
        self.assertEqual(gate.live_tokens(), {TOKEN})
        ticket.release()
        self.assertEqual(gate.live_tokens(), set())
