"""The auth rate limit per token, at its exact boundaries on a Clock: the 4th attempt in
one second passes, the 5th is refused (0x05, counted apart from bad credentials, before
any lookup), and the bucket refills at the rate."""
from mqttd.codec.packets import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED
from mqttd.edge.token_rate import TokenRate
from tests.support.gate import TOKEN, GateCase

OK = (CONNACK_ACCEPTED, None)
RATE = (CONNACK_NOT_AUTHORIZED, "auth rate")


class AuthRateTests(GateCase):
    def test_the_4th_attempt_in_a_second_passes_and_the_5th_is_refused(self):
        self.store.put_token(TOKEN)
        gate = self.gate()  # the defaults: 4 a second, burst 4
        self.assertEqual(self.codes(gate, 4), [OK] * 4)
        self.clock.advance(0.2)  # still within the second, 0.8 of a token back
        self.assertEqual(self.codes(gate, 1), [RATE])
        self.assertEqual(self.refused("auth rate"), 1)
        self.assertEqual(self.refused("bad credentials"), 0)
        self.assertEqual(self.refused("bad token"), 0)

    def test_admitted_again_after_the_refill_and_not_a_tick_before(self):
        self.store.put_token(TOKEN)
        gate = self.gate(rate_per_token=4.0, rate_burst=4)
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])
        self.clock.advance(0.249)
        self.assertEqual(self.codes(gate, 1), [RATE])
        self.clock.advance(0.001)  # 0.25 s since the last token was taken: one back
        self.assertEqual(self.codes(gate, 2), [OK, RATE])
        self.clock.advance(1.0)
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])

    def test_the_rate_is_checked_before_any_lookup(self):
        gate = self.gate(negative_cache_ttl=0.0)  # every bad token would be looked up
        results = self.codes(gate, 10, username="nonexistent-token")
        self.assertEqual(results, [(CONNACK_NOT_AUTHORIZED, "bad token")] * 4 + [RATE] * 6)
        self.assertEqual(self.store.calls["lookup_token"], 4)
        self.assertEqual(self.refused("auth rate"), 6)

    def test_each_token_has_its_own_bucket(self):
        self.store.put_token(TOKEN)
        self.store.put_token("other-token-xyz")
        gate = self.gate()
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])
        self.assertEqual(self.codes(gate, 4, username="other-token-xyz"), [OK] * 4)

    def test_a_refused_attempt_is_logged_with_its_limit(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        self.codes(gate, 5, client_id="dev-3")
        (line,) = self.logged("at the gate")
        self.assertIn("auth rate", line)
        self.assertIn("auth.rate_per_token", line)
        self.assertIn("dev-3", line)

    def test_zero_is_no_limit(self):
        self.store.put_token(TOKEN)
        self.assertEqual(self.codes(self.gate(rate_per_token=0.0), 50), [OK] * 50)


class TokenRateMemoryTests(GateCase):
    def test_buckets_are_capped_and_refilled_ones_go_first(self):
        rate = TokenRate(self.clock, 4.0, 4, max_tokens=100)
        for i in range(1000):
            self.assertTrue(rate.allow(f"key-{i}"))
        self.assertEqual(len(rate), 100)
        self.clock.advance(1.0)  # every bucket refilled: the next new key sweeps them
        rate.allow("fresh")
        self.assertEqual(len(rate), 1)

    def test_a_used_bucket_is_kept_while_it_refills(self):
        rate = TokenRate(self.clock, 4.0, 4, max_tokens=100)
        for _ in range(4):
            rate.allow("busy")
        rate.allow("another")
        self.assertFalse(rate.allow("busy"))
