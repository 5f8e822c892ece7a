"""The auth rate limit per token, at its exact boundaries on a Clock: at most 4 attempts
in any one second however they are spread (the 5th within a second is refused, 0x05,
counted apart from bad credentials, before any lookup), one exactly a second after the
oldest of the last 4 passes, and refused attempts do not count."""
from mqttd.codec.packets import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED
from mqttd.edge.token_rate import TokenRate
from tests.support.gate import TOKEN, GateCase

OK = (CONNACK_ACCEPTED, None)
RATE = (CONNACK_NOT_AUTHORIZED, "auth rate")


class AuthRateTests(GateCase):
    def spaced(self, gate, n, step):
        """(code, reason) of ``n`` connects ``step`` seconds apart (the first now)."""
        results = []
        for i in range(n):
            if i:
                self.clock.advance(step)
            results.extend(self.codes(gate, 1))
        return results

    def test_the_4th_attempt_in_an_instant_passes_and_the_5th_is_refused(self):
        self.store.put_token(TOKEN)
        gate = self.gate()  # the defaults: 4 a second, burst 4
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])
        self.assertEqual(self.refused("auth rate"), 1)
        self.assertEqual(self.refused("bad credentials"), 0)
        self.assertEqual(self.refused("bad token"), 0)

    def test_5_attempts_a_fifth_of_a_second_apart_the_5th_is_refused(self):
        # At 0, 0.2, 0.4, 0.6, 0.8: five within one second. (A token bucket of rate 4,
        # burst 4 would have refilled 0.8 of a token by the 5th and let 7 in a second.)
        self.store.put_token(TOKEN)
        gate = self.gate()
        self.assertEqual(self.spaced(gate, 5, 0.2), [OK] * 4 + [RATE])
        self.clock.advance(0.2)  # at 1.0: exactly a second after the first, which passes
        self.assertEqual(self.codes(gate, 2), [OK, RATE])  # 0.2 .. 1.0 hold 4 now

    def test_never_more_than_4_in_any_second_when_spread_evenly(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        results = self.spaced(gate, 50, 0.1)  # 10 a second for 5 s
        accepted = [i / 10 for i, result in enumerate(results) if result == OK]
        for i, at in enumerate(accepted):
            self.assertLessEqual(len([t for t in accepted[i:] if t < at + 1.0 - 1e-9]), 4)
        self.assertEqual(len(accepted), 20)  # and 4 in every second: the limit, no less

    def test_an_attempt_exactly_a_second_after_the_oldest_passes_and_not_a_tick_before(self):
        self.store.put_token(TOKEN)
        gate = self.gate(rate_per_token=4.0, rate_burst=4)
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])
        self.clock.advance(0.999)
        self.assertEqual(self.codes(gate, 1), [RATE])
        self.clock.advance(0.001)  # 1.0 s after the 4 (the window is [t, t + 1 s))
        self.assertEqual(self.codes(gate, 5), [OK] * 4 + [RATE])

    def test_refused_attempts_do_not_count(self):
        self.store.put_token(TOKEN)
        gate = self.gate(rate_per_token=4.0, rate_burst=4)
        self.assertEqual(self.codes(gate, 4), [OK] * 4)
        for _ in range(9):  # a device retrying every 0.1 s, all refused
            self.clock.advance(0.1)
            self.assertEqual(self.codes(gate, 1), [RATE])
        self.clock.advance(0.1)  # at 1.0: the refused 9 did not move the window
        self.assertEqual(self.codes(gate, 4), [OK] * 4)

    def test_the_rate_is_checked_before_any_lookup(self):
        gate = self.gate(negative_cache_ttl=0.0)  # every bad token would be looked up
        results = self.codes(gate, 10, username="nonexistent-token")
        self.assertEqual(results, [(CONNACK_NOT_AUTHORIZED, "bad token")] * 4 + [RATE] * 6)
        self.assertEqual(self.store.calls["lookup_token"], 4)
        self.assertEqual(self.refused("auth rate"), 6)

    def test_each_token_has_its_own_window(self):
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
    def test_tokens_are_capped_and_those_out_of_the_window_go_first(self):
        rate = TokenRate(self.clock, 4.0, 4, max_tokens=100)
        for i in range(1000):
            self.assertTrue(rate.allow(f"key-{i}"))
        self.assertEqual(len(rate), 100)
        self.clock.advance(1.0)  # every key's attempt out of the window: swept by a new one
        rate.allow("fresh")
        self.assertEqual(len(rate), 1)

    def test_a_token_within_its_window_is_kept(self):
        rate = TokenRate(self.clock, 4.0, 4, max_tokens=100)
        for _ in range(4):
            rate.allow("busy")
        rate.allow("another")
        self.assertFalse(rate.allow("busy"))

    def test_the_cap_is_in_bytes_too_and_follows_the_burst(self):
        rate = TokenRate(self.clock, 4.0, 4, max_tokens=1000, max_bytes=100 * (250 + 32 * 4))
        for i in range(500):
            rate.allow(f"key-{i}")
        self.assertEqual(len(rate), 100)
        rate.reconfigure(10.0, 10)  # 10 times a key: fewer keys in the same bytes
        self.assertEqual(len(rate), 100 * (250 + 32 * 4) // (250 + 32 * 10))
        for _ in range(10):
            self.assertTrue(rate.allow("many"))
        self.assertFalse(rate.allow("many"))

    def test_off_forgets_every_token(self):
        rate = TokenRate(self.clock, 4.0, 4)
        for _ in range(4):
            rate.allow("k")
        rate.reconfigure(0.0, 4)
        self.assertEqual(len(rate), 0)
        self.assertTrue(rate.allow("k"))
        rate.reconfigure(4.0, 4)  # on again: k starts empty
        self.assertEqual([rate.allow("k") for _ in range(5)], [True] * 4 + [False])
