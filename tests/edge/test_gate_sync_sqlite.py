"""The gate, its poller and a real GateStore on a real mqttd.db: the flapping detector's
bans (written to SQLite, seen again by the next poll) leave the token caches alone, so
bad tokens cost one SQLite read each; a token made by the operator still clears them
within a tick. The gate and the poller run on a Clock; the store on its own thread."""
import os
import sqlite3
import time

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.codec.packets import CONNACK_ACCEPTED
from mqttd.config import AuthConfig, FlappingDetectConfig
from mqttd.edge.gate import Gate
from mqttd.edge.gate_sync import GateSync
from mqttd.ingest.service import prepare_database
from mqttd.metrics import Metrics
from mqttd.store.accounts import add_account
from mqttd.store.bans import list_bans
from mqttd.store.gate_store import GateStore
from tests.support.accounts import put_token

GOOD = "good-token-of-acme-" + "x" * 20
BAD = [f"bad-token-{n:02d}-" + "x" * 20 for n in range(4)]


class RealStoreTests(unittest.TestCase):
    def setUp(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "mqttd.db")
        os.makedirs(os.path.dirname(path))
        prepare_database(path)
        self.operator = sqlite3.connect(path, isolation_level=None, timeout=5)
        self.addCleanup(self.operator.close)
        add_account(self.operator, "acme")
        put_token(self.operator, GOOD, "acme")
        self.clock = Clock()
        self.clock.advance(time.time())  # the store judges bans by the wall clock
        self.metrics = Metrics()
        self.store = GateStore(reactor, path, self.metrics)
        flapping = FlappingDetectConfig(enable=True, max_count=2, window_time=10.0,
                                        ban_time=60.0)
        self.gate = Gate(self.clock, AuthConfig(allow_anonymous=True), flapping, self.store,
                         self.metrics, LogRateLimit(self.clock, 1000, 60.0))
        self.sync = GateSync(self.clock, self.store, self.gate, self.metrics, 0.5)

    @defer.inlineCallbacks
    def started(self):
        yield self.store.start()
        self.addCleanup(self.store.close)
        yield self.sync.start()
        self.addCleanup(self.sync.stop)

    @defer.inlineCallbacks
    def poll(self):
        """One tick of the poller, waited for: the tick starts a poll on the store's
        thread, and ``start()`` of a running poller answers once that poll ended."""
        self.clock.advance(0.5)
        yield self.sync.start()

    @defer.inlineCallbacks
    def attempt(self, client_id, token):
        result = yield self.gate.authenticate(client_id, token, None, "10.0.0.1")
        return result

    @defer.inlineCallbacks
    def test_flapping_bans_cost_no_token_read(self):
        yield self.started()
        for token in BAD:
            self.assertEqual((yield self.attempt("b", token)).reason, "bad token")
        self.assertEqual((yield self.attempt("good", GOOD)).code, CONNACK_ACCEPTED)
        self.assertEqual(self.metrics.gate_token_lookups, len(BAD) + 1)
        for n in range(6):
            for _ in range(2):  # two ends of one client id within the window: a ban
                (yield self.attempt(f"flapper-{n}", None)).ticket.release()
            yield self.poll()
            for token in BAD:
                self.assertEqual((yield self.attempt(f"b{n}", token)).reason, "bad token")
            (yield self.attempt(f"good-{n}", GOOD)).ticket.release()
        self.assertEqual(len(list_bans(self.operator)), 6)  # stored, each seen by a poll
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="bans"), 7)
        self.assertEqual(self.metrics.gate_token_lookups, len(BAD) + 1)
        self.assertEqual((yield self.attempt("flapper-0", None)).reason, "banned")

    @defer.inlineCallbacks
    def test_a_token_made_by_the_operator_clears_them_within_a_tick(self):
        yield self.started()
        self.assertEqual((yield self.attempt("b", BAD[0])).reason, "bad token")
        put_token(self.operator, BAD[0], "acme")
        yield self.poll()
        self.assertEqual(self.metrics.value("edge_gate_reloads", what="tokens"), 2)
        self.assertEqual((yield self.attempt("b", BAD[0])).code, CONNACK_ACCEPTED)
        self.assertEqual(self.metrics.gate_token_lookups, 2)
