"""sessions-<slot>.db (mqttd.store.sessions): the cursor a save writes, the schema."""
import os

from twisted.trial.unittest import TestCase

from mqttd.store.sessions import MIGRATIONS, InflightRow, SessionSave, SessionsDb
from tests.support.store import InlinePool, InlineReactor, fired, inline_store, row


class SessionsDbTests(TestCase):
    def setUp(self):
        self.messages, self.clock, _ = inline_store(self)
        fired(self.messages.insert_batch([row(f"k{i}", topic="t") for i in range(1, 11)]))
        self.db = SessionsDb(self.clock, os.path.join(os.path.dirname(self.messages.path),
                                                      "sessions-3.db"),
                             messages_path=self.messages.path, threadpool=InlinePool())
        fired(self.db.start())
        self.addCleanup(self.db.close)

    def cursor(self, last_rowid, queued):
        fired(self.db.save(last_rowid, [SessionSave("c", None, (("t", 1),), queued, ())], [],
                           1.0))
        return fired(self.db.read("SELECT cursor FROM sessions"))[0][0]

    def test_cursor_is_before_the_oldest_queued_message(self):
        self.assertEqual(fired(self.db.last_rowid()), 10)
        self.assertEqual(self.cursor(10, ()), 10)  # nothing queued: all it was owed is done
        self.assertEqual(self.cursor(10, ("k7", "k4", "k9")), 3)  # queue order is not rowid
        self.assertEqual(self.cursor(2, ("k7",)), 2)  # read before the snapshot: lower
        self.assertEqual(self.cursor(10, ("gone",)), 10)  # a row deleted since

    def test_a_save_replaces_and_a_removal_deletes(self):
        inflight = (InflightRow(5, "k1", 1, False, False), InflightRow(6, None, 2, False, True))
        fired(self.db.save(10, [SessionSave("c", 2.0, (("t", 1), ("u/#", 2)), (), inflight)],
                           [], 3.0))
        self.assertEqual(fired(self.db.read("SELECT packet_id, key, pubrel FROM inflight "
                                            "ORDER BY seq")), [(5, "k1", 0), (6, None, 1)])
        fired(self.db.save(10, [SessionSave("c", None, (("t", 0),), (), ())], [], 4.0))
        self.assertEqual(fired(self.db.read("SELECT filter, qos FROM subscriptions")),
                         [("t", 0)])
        self.assertEqual(fired(self.db.read("SELECT count(*) FROM inflight")), [(0,)])
        fired(self.db.save(10, [], ["c"], 5.0))
        self.assertEqual(fired(self.db.read("SELECT count(*) FROM sessions")), [(0,)])
        self.assertEqual(fired(self.db.read("PRAGMA user_version")), [(len(MIGRATIONS),)])
        self.assertEqual(os.stat(self.db.path).st_mode & 0o777, 0o600)


class MissingMessagesTests(TestCase):
    def test_start_fails_while_mqttd_db_is_missing(self):
        """Cursors saved without mqttd.db would all be 0: refuse instead."""
        folder = self.mktemp()
        os.makedirs(folder)
        db = SessionsDb(InlineReactor(), os.path.join(folder, "sessions-1.db"),
                        messages_path=os.path.join(folder, "mqttd.db"), threadpool=InlinePool())
        self.assertRaises(FileNotFoundError, fired, db.start())
