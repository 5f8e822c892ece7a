"""The operator's kick through the gate (``kick_client``): the live connection of a client
id, in one account or in all, asked of the owner once, counted and logged."""
from tests.support.gate import GateCase


class KickClientTests(GateCase):
    def test_the_client_id_is_kicked_in_every_account_or_in_the_one_named(self):
        gate = self.gate(allow_anonymous=True)
        gate.tickets.issue("dev-1", None, "10.0.0.1", None)
        gate.tickets.issue("dev-1", None, "10.0.0.2", "acme")
        gate.tickets.issue("dev-2", None, "10.0.0.3", None)
        kicked = gate.kick_client("dev-1", "manhole", "acme")
        self.assertEqual([(t.client_id, t.account) for t in kicked], [("dev-1", "acme")])
        self.assertEqual(self.kicks, [("dev-1", "manhole")])
        kicked = gate.kick_client("dev-1", "manhole", any_account=True)
        self.assertEqual([t.host for t in kicked], ["10.0.0.1"])  # acme's was asked already
        self.assertEqual(self.metrics.edge_gate_kicked["manhole"], 2)
        self.assertEqual(gate.kick_client("nobody", "manhole", any_account=True), [])
        lines = [e for e in self.events if e.get("log_format", "").startswith("kicking")]
        self.assertEqual([e["reason"] for e in lines], ["manhole", "manhole"])

    def test_a_released_connection_is_not_kicked(self):
        gate = self.gate(allow_anonymous=True)
        ticket = gate.tickets.issue("dev-1", None, "10.0.0.1", None)
        ticket.release()
        self.assertEqual(gate.kick_client("dev-1", "manhole", any_account=True), [])
        self.assertEqual(self.kicks, [])
