"""A gate on a Clock with a FakeGateStore, for the gate's unit tests: ``GateCase``.

``self.gate(**auth)`` builds a ``Gate`` with ``[auth]`` changed by ``auth`` (and
``self.flapping`` as ``[flapping_detect]``); ``self.connect(...)`` asks it and returns
the AuthResult the Deferred already holds (``connecting`` returns the Deferred, for
lookups held in flight). Kicks are recorded in ``self.kicks`` as (client_id, reason).
"""
import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.config import AuthConfig, FlappingDetectConfig, User
from mqttd.edge.gate import Gate
from mqttd.metrics import Metrics
from tests.support.gate_store import FakeGateStore
from tests.support.logs import capture_logs

__all__ = ["GateCase", "TOKEN", "peer"]

TOKEN = "tok-" + "a" * 40


def peer(host="10.0.0.1", port=40000):
    return IPv4Address("TCP", host, port)


class GateCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # unix-like seconds, as the store's bans have
        self.store = FakeGateStore()
        self.metrics = Metrics()
        self.log_rate = LogRateLimit(self.clock, 1000, 60.0, metrics=self.metrics)
        self.flapping = FlappingDetectConfig(enable=False)
        self.kicks = []
        self.events = capture_logs(self)

    def gate(self, **auth):
        config = AuthConfig(**{"users": (User("alice", "secret"),), **auth})
        return Gate(self.clock, config, self.flapping, self.store, self.metrics,
                    self.log_rate, kick=lambda client_id, reason, account=None: self.kicks.append(
                        (client_id, reason)))

    def flapping_config(self, **changes):
        self.flapping = attrs.evolve(FlappingDetectConfig(), **changes)

    def connecting(self, gate, client_id="c1", username=TOKEN, password=None,
                   host="10.0.0.1"):
        return gate.authenticate(client_id, username, password, peer(host))

    def connect(self, gate, client_id="c1", username=TOKEN, password=None, host="10.0.0.1"):
        return self.successResultOf(self.connecting(gate, client_id, username, password, host))

    def codes(self, gate, n, **kwargs):
        """(code, reason) of ``n`` connects in one instant."""
        return [(r.code, r.reason) for r in (self.connect(gate, **kwargs) for _ in range(n))]

    def refused(self, reason):
        return self.metrics.value("edge_gate_refused", reason=reason)

    def logged(self, text):
        """Log events whose format contains ``text``, formatted."""
        return [formatEvent(e) for e in self.events if text in e.get("log_format", "")]
