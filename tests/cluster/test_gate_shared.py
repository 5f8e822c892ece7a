"""The gate built with the cluster's state (``Gate(shared=...)``): a quota decided in
Redis reaches the CONNECT's answer, counted as the in-memory one is."""
from twisted.internet.task import Clock

from mqttd.cluster.flapping import SharedFlapping
from mqttd.cluster.node import ClusterNode
from mqttd.cluster.seats import SharedTickets
from mqttd.codec.packets import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED
from mqttd.config import AuthConfig, User
from mqttd.edge.gate import Gate
from tests.support.gate import TOKEN, GateCase, peer
from tests.support.gate_store import record
from tests.support.redis_link import FakeLink


class _Shared:
    def __init__(self, link):
        self.node = ClusterNode(Clock(), link, "p:", "n1", 10.0, boot_id="b")
        self.link = link

    def tickets(self, metrics, on_released):
        return SharedTickets(self.node, self.link, metrics, on_released)

    def flapping(self, clock, config, on_ban, metrics, log_rate):
        return SharedFlapping(self.node, self.link, clock, config, on_ban, metrics, log_rate)


class SharedGateTests(GateCase):
    def setUp(self):
        super().setUp()
        self.link = FakeLink()
        self.store.tokens[TOKEN] = record(TOKEN, max_connections=1)

    def shared_gate(self):
        config = AuthConfig(users=(User("alice", "secret", "acme"),))
        return Gate(self.clock, config, self.flapping, self.store, self.metrics,
                    self.log_rate, kick=lambda *a: None, shared=_Shared(self.link))

    def test_a_seat_redis_gives_is_accepted(self):
        gate = self.shared_gate()
        d = self.connecting(gate, "c1")
        self.assertNoResult(d)
        self.link.answer("seat", 1)
        result = self.successResultOf(d)
        self.assertEqual((result.code, result.account), (CONNACK_ACCEPTED, "acme"))
        self.assertEqual(self.metrics.value("edge_gate_accepted", method="token"), 1)

    def test_a_seat_redis_refuses_is_a_quota_refusal(self):
        gate = self.shared_gate()
        d = self.connecting(gate, "c1")
        self.link.answer("seat", 0)
        result = self.successResultOf(d)
        self.assertEqual((result.code, result.reason), (CONNACK_NOT_AUTHORIZED, "quota"))
        self.assertEqual(self.refused("quota"), 1)

    def test_a_static_user_waits_for_its_ids_seat_being_asked(self):
        gate = self.shared_gate()
        token_connect = self.connecting(gate, "c1")
        static = gate.authenticate("c1", "alice", b"secret", peer())
        self.assertNoResult(static)
        self.link.answer("seat", 1)
        self.assertEqual(self.successResultOf(token_connect).code, CONNACK_ACCEPTED)
        result = self.successResultOf(static)
        self.assertEqual((result.code, result.account), (CONNACK_ACCEPTED, "acme"))
