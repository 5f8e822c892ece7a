"""The balancer sticks by client id, moves only a dead worker's ids, and gives them back."""
from twisted.trial import unittest

from mqttd.edge.balancer import Balancer

IDS = [f"device-{n}" for n in range(2000)]


def balancer(*slots):
    b = Balancer(slots)
    for slot in slots:
        b.up(slot)
    return b


class StickyTests(unittest.TestCase):
    def test_same_id_same_slot(self):
        b = balancer(1, 2, 3)
        first = {i: b.pick(i) for i in IDS}
        for _ in range(3):
            self.assertEqual({i: b.pick(i) for i in IDS}, first)

    def test_str_and_bytes_agree(self):
        b = balancer(1, 2, 3)
        self.assertEqual([b.pick(i) for i in IDS[:50]],
                         [b.pick(i.encode()) for i in IDS[:50]])

    def test_ids_spread_over_every_slot(self):
        b = balancer(1, 2, 3, 4)
        counts = {}
        for i in IDS:
            counts[b.pick(i)] = counts.get(b.pick(i), 0) + 1
        self.assertEqual(sorted(counts), [1, 2, 3, 4])
        self.assertTrue(all(350 < n < 650 for n in counts.values()), counts)

    def test_a_dead_slot_moves_only_its_own_ids_and_gets_them_back(self):
        b = balancer(1, 2, 3)
        before = {i: b.pick(i) for i in IDS}
        b.down(2)
        during = {i: b.pick(i) for i in IDS}
        moved = {i for i in IDS if during[i] != before[i]}
        self.assertEqual(moved, {i for i in IDS if before[i] == 2})
        self.assertNotIn(2, during.values())
        b.up(2)
        self.assertEqual({i: b.pick(i) for i in IDS}, before)

    def test_no_live_slot(self):
        b = balancer()
        self.assertIsNone(b.pick("x"))
        self.assertIsNone(b.pick(""))

    def test_home_is_the_same_slot_live_or_not(self):
        b = balancer(1, 2, 3)
        homes = {i: b.home(i) for i in IDS}
        self.assertEqual(homes, {i: b.pick(i) for i in IDS})
        b.down(3)
        self.assertEqual({i: b.home(i) for i in IDS}, homes)
        self.assertFalse(b.is_live(3))
        self.assertIsNone(b.home(""))


class EmptyIdTests(unittest.TestCase):
    def test_empty_id_goes_to_the_least_loaded(self):
        b = balancer(1, 2)
        for _ in range(3):
            b.opened(1)
        self.assertEqual(b.pick(""), 2)
        b.opened(2)
        b.opened(2)
        b.opened(2)
        b.opened(2)
        self.assertEqual(b.pick(""), 1)
        b.closed(2)
        b.closed(2)
        self.assertEqual(b.pick(b""), 2)

    def test_load_of_a_dead_slot_is_gone(self):
        b = balancer(1)
        b.opened(1)
        b.down(1)
        b.closed(1)  # its late close report changes nothing
        b.up(1)
        self.assertEqual(b.load(1), 0)


class RouteTests(unittest.TestCase):
    """Where the master hands a CONNECT, or whether it waits (``Balancer.route``)."""

    def setUp(self):
        self.b = balancer(1, 2)
        self.client_id = IDS[0]
        self.home = self.b.home(self.client_id)
        self.other = 3 - self.home

    def test_home_when_it_is_up(self):
        for clean in (True, False):
            self.assertEqual(self.b.route(self.client_id, clean, starting=True), self.home)

    def test_while_starting_everyone_waits_for_home(self):
        self.b.down(self.home)
        self.assertIsNone(self.b.route(self.client_id, True, starting=True))
        self.assertIsNone(self.b.route(self.client_id, False, starting=True))

    def test_home_restarting_a_persistent_session_waits_a_clean_one_goes_elsewhere(self):
        self.b.down(self.home)
        self.assertIsNone(self.b.route(self.client_id, False))
        self.assertEqual(self.b.route(self.client_id, True), self.other)

    def test_past_the_wait_any_live_worker(self):
        self.b.down(self.home)
        self.assertEqual(self.b.route(self.client_id, False, starting=True, waited=True),
                         self.other)
        self.b.down(self.other)
        self.assertIsNone(self.b.route(self.client_id, False, waited=True))

    def test_an_empty_id_has_no_home_and_goes_to_the_least_loaded(self):
        self.b.opened(1)
        self.assertEqual(self.b.route("", True), 2)
        self.assertIsNone(balancer().route("", True, waited=True))
