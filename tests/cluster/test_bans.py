"""Bans across nodes (mqttd.cluster.bans): this node's table changes go out, the other
nodes' come in through the log, and the whole list is merged after a reconnect."""
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.cluster.bans import ObservedStore, SharedBans, ban_field, ban_from_json, ban_to_json
from mqttd.cluster.node import ClusterNode
from mqttd.metrics import Metrics
from mqttd.store.gate_records import BanRecord
from tests.support.redis_link import FakeLink

NOW = 1_700_000_000.0
EVIL = BanRecord("clientid", "evil", "root", "test", NOW - 10)
NET = BanRecord("ip", "10.0.0.0/8", "root", "net", NOW - 5, NOW + 100)
FIELD = ban_field("clientid", "evil")


class _Gate:
    def __init__(self):
        self.banned = []

    def ban(self, record):
        self.banned.append(record)


class _Store:
    def __init__(self):
        self.removed = []

    def remove_ban(self, kind, value):
        self.removed.append((kind, value))
        return succeed(True)


def entry(seq, op, record, origin="n2/x"):
    field = ban_field(record.kind, record.value)
    return [f"{NOW:.0f}-{seq}", ["seq", str(seq), "op", op, "field", field, "ban",
                                 ban_to_json(record) if op == "add" else "", "origin", origin]]


class BansCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.link = FakeLink(up=False)
        self.metrics = Metrics()
        node = ClusterNode(self.clock, self.link, "p:", "n1", 10.0, boot_id="b")
        self.bans = SharedBans(node, self.link, self.clock, self.metrics, 0.25, 1000, 86400.0)
        self.gate, self.store = _Gate(), _Store()
        self.bans.attach(self.gate, self.store)
        self.bans.start()
        self.addCleanup(self.bans.stop)

    def connect(self, cluster=(), seq=7):
        """The link up, the snapshot answered with ``cluster``'s bans at ``seq``."""
        self.link.go_up()
        flat = []
        for record in cluster:
            flat += [ban_field(record.kind, record.value), ban_to_json(record)]
        self.link.answer("ban_snapshot", [seq, f"{NOW:.0f}-{seq}", flat])

    def read_log(self, *entries):
        self.clock.advance(0.25)
        self.link.answer("XREAD", [["p:banlog", list(entries)]] if entries else None)


class OutTests(BansCase):
    def test_a_ban_added_here_is_written_to_redis(self):
        self.connect()
        self.bans.observed([])
        self.bans.observed([EVIL])
        (add,) = self.link.named("ban_add")
        self.assertEqual(add.keys, ["p:bans", "p:unbans", "p:banlog", "p:banseq", "p:banexp"])
        self.assertEqual(add.args, [FIELD, ban_to_json(EVIL), "n1/b", 1000, repr(EVIL.at),
                                    "", repr(NOW)])
        add.deferred.callback(1)
        self.assertEqual(self.metrics.cluster_bans_sent, 1)
        self.bans.observed([EVIL])  # read again, unchanged: nothing more
        self.assertEqual(len(self.link.named("ban_add")), 1)

    def test_a_ban_removed_here_is_removed_in_redis_but_not_one_that_lapsed(self):
        lapsing = BanRecord("clientid", "brief", "flapping", "f", NOW - 2, NOW + 1)
        self.connect(cluster=[EVIL, lapsing])
        self.bans.observed([EVIL, lapsing])
        self.clock.advance(2)  # the brief one lapsed
        self.bans.observed([])
        (remove,) = self.link.named("ban_remove")
        self.assertEqual(remove.args, [FIELD, repr(NOW + 2), "n1/b", 1000, "86400.0"])

    def test_removed_while_down_is_removed_after_the_reconnect(self):
        self.bans.observed([EVIL])
        self.connect(cluster=[EVIL])
        self.link.go_down()
        self.bans.observed([])
        self.assertEqual(self.metrics.value("cluster_fallbacks", job="bans"), 1)
        self.connect(cluster=[EVIL])  # Redis still has it: not put back here
        self.assertEqual(len(self.link.named("ban_remove")), 1)
        self.assertEqual(self.gate.banned, [])

    def test_added_while_down_is_written_after_the_reconnect(self):
        self.bans.observed([EVIL])
        self.connect()
        (add,) = self.link.named("ban_add")
        self.assertEqual(add.args[1], ban_to_json(EVIL))

    def test_a_ban_removed_elsewhere_after_it_was_made_here_is_removed_here(self):
        self.bans.observed([EVIL])
        self.connect()
        self.link.answer("ban_add", 0)  # stale
        self.assertEqual(self.store.removed, [("clientid", "evil")])


class InTests(BansCase):
    def test_another_nodes_ban_is_put_in_force_here(self):
        self.connect()
        self.bans.observed([])
        self.read_log(entry(8, "add", EVIL))
        self.assertEqual(self.gate.banned, [EVIL])
        self.assertEqual(self.metrics.cluster_bans_received, 1)
        self.bans.observed([EVIL])  # now in this node's table: not sent back
        self.assertEqual(self.link.named("ban_add"), [])
        (read,) = self.link.named("XREAD")[:1]
        self.assertEqual(read.args, ["COUNT", 1000, "STREAMS", "p:banlog", f"{NOW:.0f}-7"])
        self.clock.advance(0.25)
        self.assertEqual(self.link.named("XREAD")[-1].args[-1], f"{NOW:.0f}-8")

    def test_its_own_changes_are_skipped(self):
        self.connect()
        self.read_log(entry(8, "add", EVIL, origin="n1/b"))
        self.assertEqual(self.gate.banned, [])

    def test_another_nodes_removal_removes_it_from_this_nodes_table(self):
        self.connect(cluster=[EVIL])
        self.bans.observed([EVIL])
        self.read_log(entry(8, "rm", EVIL))
        self.assertEqual(self.store.removed, [("clientid", "evil")])
        self.bans.observed([])  # gone from the table: not a removal to send back
        self.assertEqual(self.link.named("ban_remove"), [])

    def test_a_gap_in_the_log_reads_the_whole_list(self):
        self.connect()
        self.read_log(entry(9, "add", EVIL))  # 8 is missing
        self.assertEqual(self.gate.banned, [])
        self.assertEqual(len(self.link.named("ban_snapshot")), 2)
        self.assertEqual(self.metrics.cluster_resyncs, 2)

    def test_a_ban_this_node_cannot_use_is_skipped(self):
        self.connect()
        bad = entry(8, "add", EVIL)
        bad[1][7] = '{"kind": "ip", "value": "not an address"}'
        self.read_log(bad, entry(9, "add", NET))
        self.assertEqual(self.gate.banned, [NET])

    def test_nothing_is_read_while_down(self):
        self.clock.advance(1)
        self.assertEqual(self.link.calls, [])


class MergeTests(BansCase):
    def test_the_cluster_list_is_put_in_force_and_this_nodes_own_sent(self):
        newer = BanRecord("clientid", "evil", "root", "later", NOW - 1)
        self.bans.observed([newer, NET])
        self.connect(cluster=[EVIL])
        self.assertEqual(self.gate.banned, [])  # ours is later than theirs
        self.assertEqual(sorted(c.args[1] for c in self.link.named("ban_add")),
                         sorted([ban_to_json(newer), ban_to_json(NET)]))

    def test_a_later_cluster_ban_wins(self):
        later = BanRecord("clientid", "evil", "root", "later", NOW - 1)
        self.bans.observed([EVIL])
        self.connect(cluster=[later])
        self.assertEqual(self.gate.banned, [later])
        self.assertEqual(self.link.named("ban_add"), [])


class FormatTests(unittest.TestCase):
    def test_round_trip(self):
        for record in (EVIL, NET):
            self.assertEqual(ban_from_json(ban_to_json(record)), record)

    def test_bad_bans_are_refused(self):
        for text in ("{", "[]", '{"kind": "nope", "value": "x", "who": "a", "reason": "b", '
                     '"at": 1, "until": null}',
                     '{"kind": "ip", "value": "10.1.2.3/8", "who": "a", "reason": "b", '
                     '"at": 1, "until": null}'):
            self.assertRaises(ValueError, ban_from_json, text)

    def test_the_observed_store_shows_each_read(self):
        seen = []

        class Store:
            def bans(self):
                return succeed([EVIL])

            def version(self):
                return succeed(3)

        store = ObservedStore(Store(), seen.append)
        self.assertEqual(self.successResultOf(store.bans()), [EVIL])
        self.assertEqual(seen, [[EVIL]])
        self.assertEqual(self.successResultOf(store.version()), 3)
