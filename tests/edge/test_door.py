"""The door at accept: bans, the global cap, the allowlist, per-address caps and connect
rates, each at its exact boundary on a Clock; reload; bounded state; counted refusals
and a rate-limited log."""
import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.config import LimitsConfig
from mqttd.edge.door import Door, Refusal
from mqttd.metrics import Metrics
from tests.support.logs import capture_logs

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"

# Nothing limited, nothing listed: each test turns on what it checks.
OPEN = LimitsConfig(max_conn_per_ip=0, max_conn_rate_per_ip=0.0, conn_rate_burst=1,
                    allowlist=(), banned=())


def limits(**changes):
    return attrs.evolve(OPEN, **changes)


class DoorCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.log_rate = LogRateLimit(self.clock, 100, 60.0, metrics=self.metrics)

    def door(self, max_connections=1_000_000, **changes):
        return Door(self.clock, limits(**changes), max_connections, self.metrics, self.log_rate)

    def refused(self, limit):
        return self.metrics.value("edge_refused", limit=limit)

    def admit_all(self, door, host, n):
        """The limit that refused each of ``n`` connects from ``host`` (None: admitted)."""
        results = []
        for _ in range(n):
            refusal = door.admit(host)
            results.append(None if refusal is None else refusal.limit)
        return results


class PerAddressCapTests(DoorCase):
    def test_a_cap_of_n_refuses_the_next_and_admits_again_after_a_release(self):
        door = self.door(max_conn_per_ip=3)
        self.assertEqual(self.admit_all(door, A, 4), [None, None, None, "limits.max_conn_per_ip"])
        self.assertIsNone(door.admit(B))  # other addresses are unaffected
        door.release(A)
        self.assertEqual(self.admit_all(door, A, 2), [None, "limits.max_conn_per_ip"])
        self.assertEqual((door.open_from(A), door.open_from(B), door.open), (3, 1, 4))

    def test_the_refusal_says_which_key_and_why(self):
        door = self.door(max_conn_per_ip=1)
        door.admit(A)
        refusal = door.admit(A)
        self.assertEqual(refusal, Refusal("limits.max_conn_per_ip", "1 connections open from it"))
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, refusal, "limit", "x")

    def test_zero_is_no_cap(self):
        door = self.door(max_conn_per_ip=0)
        self.assertEqual(self.admit_all(door, A, 500), [None] * 500)


class ByListenerTests(DoorCase):
    def test_connections_are_counted_by_the_listener_that_accepted_them(self):
        door = self.door(max_conn_per_ip=2)
        tcp, tls = "server.listen[0]", "server.listen[1]"
        self.assertIsNone(door.admit(A, tcp))
        self.assertIsNone(door.admit(A, tls))
        self.assertEqual(door.admit(A, tcp).limit, "limits.max_conn_per_ip")  # not counted
        self.assertIsNone(door.admit(None, tcp))  # a unix socket peer
        metrics = self.metrics
        self.assertEqual(metrics.edge_admitted_by_listener, {tcp: 2, tls: 1})
        self.assertEqual(metrics.edge_connections_open_by_listener, {tcp: 2, tls: 1})
        door.release(A, tcp)
        door.release(None, tcp)
        self.assertEqual(metrics.edge_connections_open_by_listener, {tcp: 0, tls: 1})
        self.assertEqual(metrics.edge_connections_open, 1)
        self.assertEqual(metrics.edge_admitted_by_listener, {tcp: 2, tls: 1})


class ConnectRateTests(DoorCase):
    def test_the_burst_passes_in_one_instant_and_the_next_is_refused(self):
        door = self.door(max_conn_rate_per_ip=2.0, conn_rate_burst=4)
        self.assertEqual(self.admit_all(door, A, 5), [None] * 4 + ["limits.max_conn_rate_per_ip"])
        self.assertIsNone(door.admit(B))

    def test_released_connections_do_not_give_tokens_back_and_the_rate_refills(self):
        door = self.door(max_conn_rate_per_ip=2.0, conn_rate_burst=2)
        for _ in range(2):
            door.admit(A)
            door.release(A)
        self.assertEqual(door.admit(A).limit, "limits.max_conn_rate_per_ip")
        self.clock.advance(0.499)
        self.assertIsNotNone(door.admit(A))
        self.clock.advance(0.001)  # 1/rate: one connect
        self.assertEqual(self.admit_all(door, A, 2), [None, "limits.max_conn_rate_per_ip"])

    def test_the_cap_refuses_before_the_bucket_is_spent(self):
        door = self.door(max_conn_per_ip=1, max_conn_rate_per_ip=1.0, conn_rate_burst=2)
        self.assertEqual(self.admit_all(door, A, 3), [None, "limits.max_conn_per_ip",
                                                      "limits.max_conn_per_ip"])
        door.release(A)
        self.assertIsNone(door.admit(A))  # the second token was still there


class GlobalCapTests(DoorCase):
    def test_max_connections_counts_every_address_together(self):
        door = self.door(max_connections=3)
        self.assertEqual([self.admit_all(door, host, 1)[0] for host in (A, B, C)], [None] * 3)
        self.assertEqual(door.admit("10.0.0.4").limit, "broker.max_connections")
        door.release(B)
        self.assertIsNone(door.admit("10.0.0.4"))

    def test_a_unix_socket_meets_only_the_global_cap(self):
        door = self.door(max_connections=3, max_conn_per_ip=1, max_conn_rate_per_ip=1.0,
                         banned=("0.0.0.0/0", "::/0"))
        self.assertEqual(self.admit_all(door, None, 2) + self.admit_all(door, "", 2),
                         [None, None, None, "broker.max_connections"])
        door.release(None)
        self.assertIsNone(door.admit(""))
        self.assertEqual(door.admit(A).limit, "limits.banned")


class BanTests(DoorCase):
    def test_addresses_and_networks_of_both_versions(self):
        door = self.door(banned=("10.0.0.1", "192.168.0.0/16", "2001:db8::/32", "::1"))
        for host in (A, "192.168.7.9", "2001:db8:1::5", "::1", "::ffff:192.168.1.1"):
            self.assertEqual(door.admit(host), Refusal("limits.banned", "banned address"), host)
        for host in (B, "192.169.0.1", "2001:db9::1", "::2", "::ffff:10.0.0.2"):
            self.assertIsNone(door.admit(host), host)
        self.assertEqual(self.refused("limits.banned"), 5)

    def test_a_scoped_link_local_peer_is_matched_without_its_scope(self):
        door = self.door(banned=("fe80::/10",))
        self.assertEqual(door.admit("fe80::1%eth0").limit, "limits.banned")

    def test_an_ipv4_mapped_entry_bans_the_ipv4_address(self):
        door = self.door(banned=("::ffff:10.0.0.0/120",))  # 10.0.0.0/24
        self.assertEqual(door.admit(A).limit, "limits.banned")
        self.assertIsNone(door.admit("10.0.1.1"))

    def test_a_ban_comes_before_the_global_cap(self):
        door = self.door(max_connections=1, banned=(B,))
        door.admit(A)
        self.assertEqual(door.admit(B).limit, "limits.banned")
        self.assertEqual(door.admit(C).limit, "broker.max_connections")


class AllowlistTests(DoorCase):
    def test_exempt_from_the_per_address_cap_and_rate(self):
        door = self.door(max_conn_per_ip=1, max_conn_rate_per_ip=1.0, conn_rate_burst=1,
                         allowlist=("10.0.0.0/24", "2001:db8::1"))
        self.assertEqual(self.admit_all(door, A, 50), [None] * 50)
        self.assertEqual(self.admit_all(door, "2001:db8::1", 3), [None] * 3)
        self.assertEqual(self.admit_all(door, "10.0.1.1", 2), [None, "limits.max_conn_per_ip"])
        self.assertEqual(door.open_from(A), 50)  # still counted, for an exact release

    def test_not_from_bans_or_the_global_cap(self):
        door = self.door(max_connections=2, allowlist=("10.0.0.0/8",), banned=(B,))
        self.assertEqual(door.admit(B).limit, "limits.banned")
        self.assertEqual(self.admit_all(door, A, 3), [None, None, "broker.max_connections"])


class ReloadTests(DoorCase):
    def test_counts_are_kept_and_new_caps_apply_to_new_connections(self):
        door = self.door(max_conn_per_ip=3)
        self.admit_all(door, A, 3)
        door.reload(limits(max_conn_per_ip=1))
        self.assertEqual(door.open_from(A), 3)  # nothing dropped
        door.release(A)
        door.release(A)
        self.assertEqual(door.admit(A).limit, "limits.max_conn_per_ip")
        door.release(A)
        self.assertIsNone(door.admit(A))

    def test_buckets_keep_their_tokens_across_a_reload(self):
        door = self.door(max_conn_rate_per_ip=1.0, conn_rate_burst=2)
        self.admit_all(door, A, 2)
        door.reload(limits(max_conn_rate_per_ip=4.0, conn_rate_burst=10))
        self.assertEqual(door.admit(A).limit, "limits.max_conn_rate_per_ip")  # still empty
        self.clock.advance(0.25)  # at the new rate
        self.assertIsNone(door.admit(A))
        self.assertIsNone(door.admit(B))

    def test_a_new_ban_refuses_new_connections_and_old_ones_release(self):
        door = self.door()
        door.admit(A)
        door.reload(limits(banned=("10.0.0.0/8",)))
        self.assertEqual(door.admit(A).limit, "limits.banned")
        door.release(A)
        self.assertEqual((door.open, len(door)), (0, 0))

    def test_an_address_allowlisted_meanwhile_releases_exactly(self):
        door = self.door(max_conn_per_ip=1)
        door.admit(A)
        door.reload(limits(max_conn_per_ip=1, allowlist=(A,)))
        self.assertIsNone(door.admit(A))
        door.reload(limits(max_conn_per_ip=1))
        door.release(A)
        self.assertEqual(door.admit(A).limit, "limits.max_conn_per_ip")  # one still open
        door.release(A)
        self.assertIsNone(door.admit(A))

    def test_a_new_global_cap_and_one_kept(self):
        door = self.door(max_connections=1)
        door.admit(A)
        door.reload(limits(), max_connections=2)
        self.assertIsNone(door.admit(B))
        door.reload(limits())
        self.assertEqual(door.admit(C).limit, "broker.max_connections")

    def test_a_bad_entry_changes_nothing(self):
        door = self.door(banned=(A,))
        with self.assertRaises(ValueError) as caught:
            door.reload(limits(banned=(B, "nonsense")))
        self.assertIn("limits.banned[1]", str(caught.exception))
        self.assertEqual(door.admit(A).limit, "limits.banned")
        self.assertIsNone(door.admit(B))


class BoundedStateTests(DoorCase):
    def test_an_address_is_forgotten_when_closed_and_refilled(self):
        door = self.door(max_conn_per_ip=5, max_conn_rate_per_ip=10.0, conn_rate_burst=2)
        door.admit(A)
        door.admit(A)
        door.release(A)
        self.assertEqual(len(door), 1)  # one open
        door.release(A)
        self.assertEqual(len(door), 1)  # refilling: it must not get a full bucket back
        self.assertEqual(door.admit(A).limit, "limits.max_conn_rate_per_ip")
        self.clock.advance(0.2)  # refilled
        door.admit(B)  # a new address sweeps the refilled ones
        self.assertEqual(len(door), 1)
        self.assertEqual(door.open_from(A), 0)
        self.assertEqual(self.metrics.edge_addresses_tracked, 1)

    def test_without_a_rate_an_address_is_forgotten_at_its_last_close(self):
        door = self.door(max_conn_per_ip=5)
        door.admit(A)
        door.release(A)
        self.assertEqual(len(door), 0)

    def test_a_scan_from_many_addresses_keeps_at_most_max_idle_addresses(self):
        door = Door(self.clock, limits(max_conn_per_ip=1, max_conn_rate_per_ip=0.001,
                                       conn_rate_burst=5),
                    1_000_000, self.metrics, self.log_rate, max_idle_addresses=100)
        for i in range(5000):
            host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            self.assertIsNone(door.admit(host))
            door.release(host)
        self.assertEqual(len(door), 100)
        self.assertEqual(self.metrics.edge_addresses_tracked, 100)

    def test_a_scan_is_forgotten_as_its_buckets_refill(self):
        door = self.door(max_conn_rate_per_ip=10.0, conn_rate_burst=10)
        for i in range(1000):
            host = f"10.0.{i >> 8}.{i & 255}"
            door.admit(host)
            door.release(host)
            self.clock.advance(0.001)
        self.assertLess(len(door), 120)  # those of the last 0.1 s (1/rate)
        self.clock.advance(1)
        door.reload(limits(max_conn_rate_per_ip=10.0, conn_rate_burst=10))
        self.assertEqual(len(door), 0)

    def test_releasing_more_than_admitted_is_an_error(self):
        door = self.door()
        self.assertRaises(ValueError, door.release, A)
        self.assertRaises(ValueError, door.release, None)
        door.admit(A)
        door.release(A)
        self.assertRaises(ValueError, door.release, A)
        self.assertEqual(door.open, 0)

    def test_an_ipv4_mapped_peer_counts_as_its_ipv4_address(self):
        door = self.door(max_conn_per_ip=2)
        door.admit(A)
        door.admit(f"::ffff:{A}")
        self.assertEqual(door.admit(A).limit, "limits.max_conn_per_ip")
        door.release(f"::ffff:{A}")
        self.assertEqual(door.open_from(A), 1)


class CountedAndLoggedTests(DoorCase):
    def test_each_refusal_is_counted_by_the_limit_that_refused_it(self):
        door = self.door(max_connections=6, max_conn_per_ip=2, max_conn_rate_per_ip=1.0,
                         conn_rate_burst=3, banned=("10.9.0.0/16",))
        self.admit_all(door, A, 3)  # 2 in, 1 over the cap
        door.release(A)
        door.release(A)
        self.admit_all(door, A, 2)  # 1 in (3rd token), 1 over the rate
        self.admit_all(door, "10.9.1.1", 2)
        self.admit_all(door, B, 2)
        self.admit_all(door, C, 2)
        self.admit_all(door, "10.0.0.4", 2)  # the 6th in, then over max_connections
        self.assertEqual(dict(self.metrics.edge_refused), {
            "limits.max_conn_per_ip": 1, "limits.max_conn_rate_per_ip": 1,
            "limits.banned": 2, "broker.max_connections": 1})
        self.assertEqual(self.metrics.edge_admitted, 8)
        self.assertEqual(self.metrics.edge_connections_open, 6)
        self.assertEqual(door.open, 6)

    def test_refusals_are_logged_within_a_budget_per_address(self):
        self.log_rate = LogRateLimit(self.clock, 2, 60.0, metrics=self.metrics)
        door = self.door(banned=(A, B))
        events = capture_logs(self)
        for _ in range(10):
            door.admit(A)
        door.admit(B)
        lines = [(e["peer"], e["limit"], e["reason"]) for e in events
                 if e.get("log_format", "").startswith("refused")]
        self.assertEqual(lines, [(A, "limits.banned", "banned address")] * 2
                         + [(B, "limits.banned", "banned address")])
        self.assertEqual(self.metrics.mqtt_log_lines_suppressed, 8)
        self.assertEqual(self.refused("limits.banned"), 11)  # every one counted


class WatchTests(DoorCase):
    def test_every_socket_with_an_address_is_watched_let_in_or_not(self):
        door = self.door(max_conn_per_ip=1)
        seen = []
        door.watch(seen.append)
        self.assertEqual(self.admit_all(door, A, 2), [None, "limits.max_conn_per_ip"])
        door.admit("::ffff:10.0.0.2")
        door.admit(None)  # a unix socket has no address to watch
        self.assertEqual(seen, [A, A, B])

    def test_open_counts_are_the_addresses_with_connections_open(self):
        door = self.door(max_conn_rate_per_ip=1.0, conn_rate_burst=5)
        self.admit_all(door, A, 3)
        door.admit(B)
        door.release(B)  # refilling: still tracked, nothing open
        self.assertEqual(door.open_counts(), {A: 3})
