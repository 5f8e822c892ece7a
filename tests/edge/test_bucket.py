"""The token bucket behind the per-address connect rate, at its exact boundaries."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.edge.bucket import TokenBuckets


class TokenBucketTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()

    def takes(self, buckets, bucket, n):
        return [buckets.take(bucket) for _ in range(n)]

    def test_burst_passes_in_one_instant_and_the_next_is_refused(self):
        buckets = TokenBuckets(self.clock, rate=1.0, burst=5)
        bucket = buckets.new()
        self.assertEqual(self.takes(buckets, bucket, 5), [True] * 5)  # the burst-th passes
        self.assertFalse(buckets.take(bucket))  # the (burst+1)-th is refused

    def test_refills_at_the_rate(self):
        buckets = TokenBuckets(self.clock, rate=4.0, burst=2)
        bucket = buckets.new()
        self.takes(buckets, bucket, 2)
        self.clock.advance(0.2)  # 0.8 of a token
        self.assertFalse(buckets.take(bucket))
        self.clock.advance(0.05)  # 1/rate since it ran dry: one token
        self.assertEqual(self.takes(buckets, bucket, 2), [True, False])
        self.clock.advance(0.5)  # two tokens
        self.assertEqual(self.takes(buckets, bucket, 3), [True, True, False])

    def test_an_exact_interval_gives_a_whole_token_despite_floats(self):
        buckets = TokenBuckets(self.clock, rate=3.0, burst=1)
        bucket = buckets.new()
        for _ in range(30):
            self.assertTrue(buckets.take(bucket))
            self.assertFalse(buckets.take(bucket))
            self.clock.advance(1 / 3)

    def test_a_refused_take_costs_nothing(self):
        buckets = TokenBuckets(self.clock, rate=1.0, burst=1)
        bucket = buckets.new()
        buckets.take(bucket)
        for _ in range(3):
            self.clock.advance(0.25)
            self.assertFalse(buckets.take(bucket))
        self.clock.advance(0.25)
        self.assertTrue(buckets.take(bucket))  # refused tries did not push the refill back

    def test_never_holds_more_than_the_burst(self):
        buckets = TokenBuckets(self.clock, rate=10.0, burst=3)
        bucket = buckets.new()
        self.clock.advance(3600)
        self.assertEqual(self.takes(buckets, bucket, 4), [True, True, True, False])

    def test_is_full_once_refilled_to_the_burst(self):
        buckets = TokenBuckets(self.clock, rate=2.0, burst=2)
        bucket = buckets.new()
        self.assertTrue(buckets.is_full(bucket))
        buckets.take(bucket)
        buckets.take(bucket)
        self.assertFalse(buckets.is_full(bucket))
        self.clock.advance(0.999)
        self.assertFalse(buckets.is_full(bucket))
        self.clock.advance(0.001)
        self.assertTrue(buckets.is_full(bucket))

    def test_buckets_share_the_rate_and_keep_their_own_tokens(self):
        buckets = TokenBuckets(self.clock, rate=1.0, burst=1)
        first, second = buckets.new(), buckets.new()
        self.assertTrue(buckets.take(first))
        self.assertFalse(buckets.take(first))
        self.assertTrue(buckets.take(second))

    def test_a_rate_of_zero_or_an_empty_burst_is_refused(self):
        self.assertRaises(ValueError, TokenBuckets, self.clock, 0.0, 1)
        self.assertRaises(ValueError, TokenBuckets, self.clock, 1.0, 0)
