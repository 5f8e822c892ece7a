"""OfflineCursors: an offline session's cursor floor, and the queued keys a save still
has to look up (only those queued since the last save it wrote)."""
from collections import deque

from twisted.trial.unittest import SynchronousTestCase

from mqttd.broker.offline_cursors import OfflineCursors


class _Msg:
    def __init__(self, key):
        self.key = key


class _Session:
    protocol = None


def queue_of(*keys, retained=()):
    return deque((_Msg(k), 1, k in retained) for k in keys)


class OfflineCursorsTests(SynchronousTestCase):
    def setUp(self):
        self.cursors = OfflineCursors()
        self.session = _Session()

    def offline(self, rowid=100):
        self.cursors.went_offline(self.session)
        self.cursors.floor(self.session, rowid)

    def test_floor_is_the_rowid_read_once_it_went_offline(self):
        self.offline(100)
        floor, keys, _ = self.cursors.snapshot(self.session, queue_of("a", "b"))
        self.assertEqual((floor, keys), (100, ("a", "b")))

    def test_after_a_written_save_only_the_keys_queued_since_are_looked_up(self):
        self.offline(100)
        queue = queue_of("a", "b")
        _, _, snap = self.cursors.snapshot(self.session, queue)
        self.cursors.written([snap], [90])
        queue.extend(queue_of("c", "r", retained=("r",)))
        floor, keys, _ = self.cursors.snapshot(self.session, queue)
        self.assertEqual((floor, keys), (90, ("c",)))  # a retained one has no row to find

    def test_a_save_that_was_not_written_leaves_every_key_to_look_up(self):
        self.offline(100)
        queue = queue_of("a", "b")
        self.cursors.snapshot(self.session, queue)  # its save failed: no written()
        self.assertEqual(self.cursors.snapshot(self.session, queue)[:2], (100, ("a", "b")))

    def test_a_save_taken_before_the_session_came_and_went_again_records_nothing(self):
        self.offline(100)
        queue = queue_of("a", "b")
        _, _, snap = self.cursors.snapshot(self.session, queue)
        self.cursors.went_offline(self.session)  # online and offline again meanwhile
        self.cursors.written([snap], [90])
        queue.popleft()  # delivered while it was online
        self.assertEqual(self.cursors.snapshot(self.session, queue)[:2], (None, ("b",)))

    def test_online_there_is_no_floor_and_the_whole_queue_is_looked_up(self):
        self.offline(100)
        self.session.protocol = object()
        floor, keys, snap = self.cursors.snapshot(self.session, queue_of("a"))
        self.assertEqual((floor, keys, snap), (None, ("a",), None))
        self.session.protocol = None
        self.assertIsNone(self.cursors.snapshot(self.session, queue_of("a"))[0])

    def test_a_restored_session_keeps_its_saved_cursor(self):
        self.cursors.restored(self.session, 42)
        self.assertEqual(self.cursors.snapshot(self.session, queue_of("a"))[:2], (42, ("a",)))

    def test_a_floor_read_after_the_save_took_its_own_keeps_the_lower(self):
        self.cursors.went_offline(self.session)
        _, _, snap = self.cursors.snapshot(self.session, queue_of("a"))  # floor not read yet
        self.cursors.floor(self.session, 100)
        self.cursors.written([snap], [80])
        self.assertEqual(self.cursors.snapshot(self.session, queue_of("a"))[0], 80)
