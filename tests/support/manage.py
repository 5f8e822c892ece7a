"""An appliance on a Clock for the manhole's helpers and the report: ``ApplianceCase``.

``self.view`` is an ``ApplianceView`` over real pieces: a Door (watched by
``ConnectRates``), a Gate on a ``FakeGateStore`` whose kicks land in ``self.kicks``,
the master's TreeMetrics (children report with ``self.report_child``), the refusal
history, and ``clients`` answered by a real broker (``self.harness``, the broker
harness: its connections are what ``clients()`` lists). ``self.admit(host, client_id)``
lets one connection in through the door and the gate, as the master would.
"""
import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.lograte import LogRateLimit
from mqttd.config import parse_config
from mqttd.edge.door import Door
from mqttd.edge.gate import Gate
from mqttd.manage.connect_rates import ConnectRates
from mqttd.manage.history import CounterHistory
from mqttd.manage.report import refusal_totals
from mqttd.manage.tree_metrics import TreeMetrics, snapshot
from mqttd.manage.view import ApplianceView, local_clients
from mqttd.metrics import Metrics
from tests.support.broker import Harness
from tests.support.gate_store import FakeGateStore
from tests.support.logs import capture_logs

__all__ = ["ApplianceCase"]

START = 1_700_000_000.0


class ApplianceCase(unittest.TestCase):
    document = {"auth": {"allow_anonymous": True,
                         "users": [{"username": "alice", "password": "secret"}]},
                "limits": {"allowlist": []}}

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.config = parse_config(self.document)
        self.metrics = Metrics()
        self.log_rate = LogRateLimit(self.clock, 1000, 60.0, metrics=self.metrics)
        self.store = FakeGateStore()
        self.kicks = []
        self.gate = Gate(self.clock, self.config.auth, self.config.flapping_detect,
                         self.store, self.metrics, self.log_rate,
                         kick=lambda client_id, reason, account=None:
                         self.kicks.append((client_id, reason, account)))
        self.door = Door(self.clock, self.config.limits, self.config.broker.max_connections,
                         self.metrics, self.log_rate, bans=self.gate.bans)
        self.tree = TreeMetrics(self.clock, self.metrics, "mqttd-master")
        self.rates = ConnectRates(self.clock)
        self.door.watch(self.rates.seen)
        self.refusals = CounterHistory(self.clock, lambda: refusal_totals(self.tree.families()))
        self.harness = Harness(authenticator=StaticAuthenticator(self.config.auth))
        self.view = ApplianceView(
            self.clock, self.config, "tree", self.tree.families, self.door, self.gate,
            self.store, self.rates, self.refusals,
            local_clients(self.harness.broker, "mqttd-worker-1", frozenset({"alice"})))
        self.events = capture_logs(self)

    def admit(self, host, client_id=None, username=None, password=None):
        """One socket from ``host`` through the door, and if ``client_id`` its CONNECT
        through the gate: the AuthResult (None for a socket only), the door's refusal."""
        refusal = self.door.admit(host)
        if refusal is not None or client_id is None:
            return refusal
        return self.successResultOf(self.gate.authenticate(
            client_id, username, password, IPv4Address("TCP", host, 40000)))

    def report_child(self, name, run="r1", **values):
        """A snapshot from child ``name`` whose registry has ``values`` set."""
        metrics = Metrics()
        for key, value in values.items():
            setattr(metrics, key, value)
        self.tree.report(name, snapshot(metrics, run))

    def with_config(self, **sections):
        """The view with config sections changed (``webhook={"pool_size": 4}``)."""
        config = self.config
        for section, changes in sections.items():
            config = attrs.evolve(config, **{section: attrs.evolve(getattr(config, section),
                                                                   **changes)})
        self.view.config = config
