"""The bans in force: client ids, usernames, addresses and networks; expiry exactly at
``until``; a reload that keeps the live bans the store may not have yet; the gauge; and
the door refusing a banned address at accept."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.broker.lograte import LogRateLimit
from mqttd.config import LimitsConfig
from mqttd.edge.ban_list import BanList
from mqttd.edge.door import Door
from mqttd.metrics import Metrics
from mqttd.store.gate_records import BanRecord

T0 = 1_700_000_000.0


def ban(kind, value, until=None, who="operator"):
    return BanRecord(kind, value, who, "test", T0, until)


class BanListCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.metrics = Metrics()
        self.bans = BanList(self.clock, self.metrics)


class MatchTests(BanListCase):
    def test_each_kind_matches_its_own_field(self):
        self.bans.replace([ban("clientid", "c"), ban("username", "u"), ban("ip", "10.0.0.1")],
                          self.bans.loading())
        self.assertEqual(self.bans.match("c", None, None).kind, "clientid")
        self.assertEqual(self.bans.match("x", "u", None).kind, "username")
        self.assertEqual(self.bans.match("x", None, "10.0.0.1").kind, "ip")
        self.assertIsNone(self.bans.match("u", "c", "10.0.0.2"))
        self.assertIsNone(self.bans.match("x", "x", None))

    def test_networks_v4_v6_and_mapped_addresses(self):
        self.bans.replace([ban("ip", "192.168.0.0/16"), ban("ip", "2001:db8::/32"),
                           ban("ip", "::ffff:172.16.0.9")], self.bans.loading())
        for host in ("192.168.3.4", "::ffff:192.168.0.1", "2001:db8::1", "172.16.0.9"):
            self.assertTrue(self.bans.ip_banned(host), host)
        for host in ("192.169.0.1", "2001:db9::1", "172.16.0.10", "not an address", "", None):
            self.assertFalse(self.bans.ip_banned(host), host)

    def test_a_bad_address_row_bans_nobody(self):
        self.bans.replace([ban("ip", "nonsense"), ban("ip", "10.1.2.3/8")], self.bans.loading())
        self.assertFalse(self.bans.ip_banned("10.1.2.3"))


class ExpiryTests(BanListCase):
    def test_a_ban_lifts_at_until_and_not_a_tick_before(self):
        self.bans.add(ban("clientid", "c", until=T0 + 300.0))
        self.bans.add(ban("ip", "10.0.0.0/24", until=T0 + 300.0))
        self.clock.advance(299.999)
        self.assertIsNotNone(self.bans.match("c", None, None))
        self.assertTrue(self.bans.ip_banned("10.0.0.3"))
        self.clock.advance(T0 + 300.0 - self.clock.seconds())
        self.assertIsNone(self.bans.match("c", None, None))
        self.assertFalse(self.bans.ip_banned("10.0.0.3"))
        self.assertEqual(self.bans.active(), [])

    def test_the_gauge_follows_adds_and_prunes(self):
        self.bans.add(ban("clientid", "a", until=T0 + 10))
        self.bans.add(ban("clientid", "b"))
        self.assertEqual(self.metrics.edge_bans_active, 2)
        self.clock.advance(10)
        self.bans.prune()
        self.assertEqual((self.metrics.edge_bans_active, len(self.bans)), (1, 1))

    def test_an_expired_ban_is_not_added_nor_loaded(self):
        self.assertFalse(self.bans.add(ban("clientid", "a", until=T0)))
        self.bans.replace([ban("clientid", "b", until=T0 - 1)], self.bans.loading())
        self.assertEqual(len(self.bans), 0)

    def test_live_bans_are_capped(self):
        bans = BanList(self.clock, self.metrics, max_live=2)
        self.assertTrue(bans.add(ban("clientid", "a", until=T0 + 1)))
        self.assertTrue(bans.add(ban("clientid", "b", until=T0 + 5)))
        self.assertFalse(bans.add(ban("clientid", "c", until=T0 + 5)))
        self.clock.advance(1)  # a is over: room for c after a prune
        self.assertTrue(bans.add(ban("clientid", "c", until=T0 + 5)))


class ReplaceTests(BanListCase):
    def test_replace_drops_what_the_store_no_longer_has(self):
        self.bans.replace([ban("clientid", "a"), ban("ip", "10.0.0.0/8")], self.bans.loading())
        self.bans.replace([ban("clientid", "b")], self.bans.loading())
        self.assertIsNone(self.bans.match("a", None, "10.0.0.1"))
        self.assertIsNotNone(self.bans.match("b", None, None))
        self.assertEqual(self.metrics.edge_bans_active, 1)

    def test_a_live_ban_not_yet_stored_survives_a_reload(self):
        live = ban("clientid", "flappy", until=T0 + 300, who="flapping")
        self.bans.add(live)
        self.bans.replace([], self.bans.loading())  # read before the write landed
        self.assertIsNotNone(self.bans.match("flappy", None, None))

    def test_a_live_ban_confirmed_during_a_reload_survives_it(self):
        live = ban("clientid", "flappy", until=T0 + 300, who="flapping")
        self.bans.add(live)
        mark = self.bans.loading()
        self.bans.confirmed(live)  # stored after that reload read the table
        self.bans.replace([], mark)
        self.assertIsNotNone(self.bans.match("flappy", None, None))

    def test_a_stored_live_ban_removed_by_the_operator_goes(self):
        live = ban("clientid", "flappy", until=T0 + 300, who="flapping")
        self.bans.add(live)
        self.bans.confirmed(live)
        self.bans.replace([], self.bans.loading())  # read after it was stored: rm'd since
        self.assertIsNone(self.bans.match("flappy", None, None))


class DoorHookTests(BanListCase):
    def test_the_door_refuses_a_banned_address_at_accept(self):
        limits = LimitsConfig(max_conn_per_ip=0, max_conn_rate_per_ip=0.0, allowlist=(),
                              banned=())
        door = Door(self.clock, limits, 1000, self.metrics,
                    LogRateLimit(self.clock, 100, 60.0, metrics=self.metrics), bans=self.bans)
        self.assertIsNone(door.admit("10.0.0.1"))
        self.bans.add(ban("ip", "10.0.0.0/24", until=T0 + 60))
        refusal = door.admit("10.0.0.1")
        self.assertEqual(refusal.limit, "banned")
        self.assertEqual(self.metrics.value("edge_refused", limit="banned"), 1)
        self.assertEqual(door.open, 1)  # the refused one was never counted in
        self.clock.advance(60)
        self.assertIsNone(door.admit("10.0.0.1"))

    def test_the_static_ban_list_still_refuses(self):
        limits = LimitsConfig(allowlist=(), banned=("10.9.0.0/16",))
        door = Door(self.clock, limits, 1000, self.metrics,
                    LogRateLimit(self.clock, 100, 60.0, metrics=self.metrics), bans=self.bans)
        self.assertEqual(door.admit("10.9.1.1").limit, "limits.banned")
