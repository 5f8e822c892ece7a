"""The gate and accounts' namespaces: a static user with an ``account`` is admitted as
that account's (its AuthResult and its ticket name it), holds one of the account's
seats while connected (the devices' quota counts it) though the quota never refuses it,
and a kick names the account, so that the broker closes that tenant's client and not
another's of the same id."""
from mqttd.codec.packets import CONNACK_ACCEPTED
from mqttd.config import User
from mqttd.store.gate_records import BanRecord
from tests.support.gate import TOKEN, GateCase


class StaticAccountTests(GateCase):
    def test_a_static_user_with_an_account_is_admitted_as_the_accounts(self):
        gate = self.gate(users=(User("alice", "secret", "acme"), User("bob", "pw")))
        alice = self.connect(gate, client_id="dev-1", username="alice", password=b"secret")
        self.assertEqual((alice.code, alice.account, alice.ticket.account),
                         (CONNACK_ACCEPTED, "acme", "acme"))
        bob = self.connect(gate, client_id="dev-2", username="bob", password=b"pw")
        self.assertEqual((bob.code, bob.account), (CONNACK_ACCEPTED, None))

    def test_a_kick_names_the_account(self):
        kicked = []
        gate = self.gate(users=(User("alice", "secret", "acme"),))
        gate.kick = lambda client_id, reason, account: kicked.append((client_id, account))
        self.connect(gate, client_id="dev-1", username="alice", password=b"secret")
        gate.ban(BanRecord("username", "alice", "operator", "test", 0.0, None))
        self.assertEqual(kicked, [("dev-1", "acme")])

    def test_two_tenants_clients_of_one_id_are_two_live_tickets(self):
        kicked = []
        gate = self.gate(users=(User("alice", "secret", "acme"), User("bob", "pw", "globex")))
        gate.kick = lambda client_id, reason, account: kicked.append((client_id, account))
        self.connect(gate, client_id="dev-1", username="alice", password=b"secret")
        self.connect(gate, client_id="dev-1", username="bob", password=b"pw")
        self.assertEqual(len(gate.tickets), 2)
        self.assertEqual(gate.tickets.get("dev-1", "globex").username, "bob")
        gate.ban(BanRecord("clientid", "dev-1", "operator", "test", 0.0, None))
        self.assertEqual(sorted(kicked), [("dev-1", "acme"), ("dev-1", "globex")])


class StaticSeatTests(GateCase):
    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN, account="acme", max_connections=2)
        self.gate_ = self.gate(users=(User("alice", "secret", "acme"),), rate_per_token=0.0)

    def alice(self, client_id):
        return self.connect(self.gate_, client_id=client_id, username="alice",
                            password=b"secret")

    def test_a_static_user_takes_a_seat_of_its_accounts_quota(self):
        alice = self.alice("dashboard")
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 1)
        self.assertEqual(self.connect(self.gate_, client_id="dev-1").code, CONNACK_ACCEPTED)
        self.assertEqual(self.connect(self.gate_, client_id="dev-2").reason, "quota")
        alice.ticket.release()  # its seat back: a device gets it
        self.assertEqual(self.connect(self.gate_, client_id="dev-2").code, CONNACK_ACCEPTED)

    def test_the_quota_never_refuses_a_static_user(self):
        for i in range(2):
            self.connect(self.gate_, client_id=f"dev-{i}")
        result = self.alice("dashboard")  # the account is full: admitted all the same
        self.assertEqual((result.code, result.account), (CONNACK_ACCEPTED, "acme"))
        self.assertEqual(self.gate_.tickets.seats_taken("acme"), 3)
        self.assertEqual(self.connect(self.gate_, client_id="dev-9").reason, "quota")
        self.assertEqual(self.store.calls["lookup_token"], 1)  # alice asked no store
