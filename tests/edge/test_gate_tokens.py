"""Token lookups: a storm of bad tokens reaches the store once per token (the negative
cache, its TTL), attempts in flight share one lookup, known tokens are cached within
their bound, a change forgets them, and a failing store is 0x03, never a failure."""
from twisted.logger import formatEvent

from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
)
from tests.support.gate import TOKEN, GateCase

BAD = (CONNACK_NOT_AUTHORIZED, "bad token")


class NegativeCacheTests(GateCase):
    def test_2000_bad_attempts_look_each_token_up_once(self):
        gate = self.gate()
        tokens = [f"bad-token-{i:04}" for i in range(500)]
        results = [self.connect(gate, username=token) for _ in range(4) for token in tokens]
        self.assertEqual(len(results), 2000)
        self.assertEqual({(r.code, r.reason) for r in results}, {BAD})
        self.assertEqual(self.store.calls["lookup_token"], 500)
        self.assertEqual(set(self.store.looked_up.values()), {1})
        self.assertEqual(self.metrics.edge_gate_negative_hits, 1500)
        self.assertEqual(self.metrics.edge_gate_lookups, 500)
        self.assertEqual(self.refused("bad token"), 2000)

    def test_a_long_storm_of_few_tokens_is_one_lookup_each(self):
        gate = self.gate(rate_per_token=0.0, negative_cache_ttl=3600.0)
        for i in range(2000):
            self.connect(gate, username=f"bad-{i % 5}")
            self.clock.advance(0.1)
        self.assertEqual(self.store.calls["lookup_token"], 5)

    def test_the_negative_cache_lasts_its_ttl_and_not_a_tick_more(self):
        gate = self.gate(negative_cache_ttl=10.0, rate_per_token=0.0)
        self.connect(gate, username="bad-token")
        self.clock.advance(9.999)
        self.connect(gate, username="bad-token")
        self.assertEqual(self.store.calls["lookup_token"], 1)
        self.clock.advance(0.001)
        self.connect(gate, username="bad-token")
        self.assertEqual(self.store.calls["lookup_token"], 2)

    def test_a_token_made_after_its_miss_is_found_after_a_change(self):
        gate = self.gate()
        self.assertEqual(self.connect(gate).reason, "bad token")
        self.store.put_token(TOKEN)
        gate.forget_tokens()  # what GateSync does when accounts or tokens changed
        self.assertEqual(self.connect(gate).code, CONNACK_ACCEPTED)

    def test_zero_ttl_remembers_nothing(self):
        gate = self.gate(negative_cache_ttl=0.0)
        for _ in range(3):
            self.connect(gate, username="bad-token")
        self.assertEqual(self.store.calls["lookup_token"], 3)


class InFlightTests(GateCase):
    def test_attempts_while_a_lookup_is_in_flight_share_it(self):
        self.store.put_token(TOKEN)
        self.store.hold = True
        gate = self.gate()
        waiting = [self.connecting(gate, client_id=f"c{i}") for i in range(4)]
        self.assertEqual(self.store.calls["lookup_token"], 1)
        for d in waiting:
            self.assertNoResult(d)
        self.store.finish_lookups()
        results = [self.successResultOf(d) for d in waiting]
        self.assertEqual([r.code for r in results], [CONNACK_ACCEPTED] * 4)
        self.assertEqual([r.ticket.client_id for r in results], ["c0", "c1", "c2", "c3"])
        self.assertEqual(self.store.calls["lookup_token"], 1)

    def test_a_shared_lookup_of_a_bad_token_refuses_every_waiter(self):
        self.store.hold = True
        gate = self.gate()
        waiting = [self.connecting(gate, username="bad-token") for _ in range(3)]
        self.store.finish_lookups()
        self.assertEqual([self.successResultOf(d).reason for d in waiting], ["bad token"] * 3)
        self.assertEqual(self.store.calls["lookup_token"], 1)

    def test_a_lookup_that_crossed_a_change_is_made_again(self):
        self.store.put_token(TOKEN)
        self.store.hold = True
        gate = self.gate()
        d = self.connecting(gate)
        self.store.revoke(TOKEN)
        gate.forget_tokens()
        self.store.finish_lookups()  # answers the lookup made before the change...
        self.assertNoResult(d)  # ...which is not believed: asked again
        self.store.finish_lookups()
        self.assertEqual(self.successResultOf(d).reason, "token revoked")
        self.assertEqual(self.store.calls["lookup_token"], 2)


class PositiveCacheTests(GateCase):
    def test_a_known_token_is_looked_up_once(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        for i in range(3):
            self.assertEqual(self.connect(gate, client_id=f"c{i}").code, CONNACK_ACCEPTED)
        self.assertEqual(self.store.calls["lookup_token"], 1)

    def test_the_cache_holds_token_cache_size_tokens_least_recent_out(self):
        for token in ("token-a", "token-b", "token-c"):
            self.store.put_token(token)
        gate = self.gate(token_cache_size=2)
        for token in ("token-a", "token-b", "token-a", "token-c", "token-a", "token-b"):
            self.connect(gate, username=token)
        # a, b (misses), a (hit), c (miss, b out), a (hit), b (miss)
        self.assertEqual(dict(self.store.looked_up), {"token-a": 1, "token-b": 2, "token-c": 1})

    def test_size_zero_looks_up_every_time(self):
        self.store.put_token(TOKEN)
        gate = self.gate(token_cache_size=0)
        self.codes(gate, 3)
        self.assertEqual(self.store.calls["lookup_token"], 3)


class StoreFailureTests(GateCase):
    def test_a_failing_lookup_is_0x03_and_logged_with_its_traceback(self):
        self.store.put_token(TOKEN)
        self.store.fail.add("lookup_token")
        gate = self.gate()
        result = self.connect(gate)
        self.assertEqual((result.code, result.reason),
                         (CONNACK_SERVER_UNAVAILABLE, "auth unavailable"))
        self.assertEqual(self.refused("auth unavailable"), 1)
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIn("database is locked", str(failures[0]["log_failure"].value))
        self.assertNotIn(TOKEN, formatEvent(failures[0]))
        self.flushLoggedErrors()
        self.store.fail.clear()  # not cached: the next attempt asks again
        self.assertEqual(self.connect(gate).code, CONNACK_ACCEPTED)

    def test_every_waiter_on_a_failed_lookup_gets_0x03(self):
        self.store.hold = True
        gate = self.gate()
        waiting = [self.connecting(gate) for _ in range(3)]
        self.store.fail_lookups()
        self.assertEqual([self.successResultOf(d).code for d in waiting],
                         [CONNACK_SERVER_UNAVAILABLE] * 3)
        self.flushLoggedErrors()
