"""Nothing lost across a crash: retained messages and persistent sessions survive a
``kill -9`` of the real ``twistd mqttd`` and its restart on the same data directory."""
import glob
import os
import sqlite3

from tests.integration.support.common import wait_for
from tests.integration.support.database import message_rowids, saved_sessions
from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase


@requires_mqttd("retained messages and sessions kept in SQLite")
class CrashTests(BrokerTestCase):
    def crash_and_restart(self):
        """kill -9, then the appliance again on the same data directory (a new port)."""
        self.broker.sigkill()
        self.broker.start()
        self.port = self.broker.port

    def sessions_dbs(self):
        """Every broker's sessions file: sessions-0.db of the one process, or one per
        worker of the tree (the default), sessions-1.db ... sessions-N.db."""
        return sorted(glob.glob(os.path.join(self.broker.data_dir, "sessions-*.db")))

    def saved_offline_past(self, client_id, rowid):
        """Whether ``client_id``'s sessions file has it offline, its cursor at or past
        ``rowid``: what a crash now leaves of it."""
        cursor, offline_since = saved_sessions(self.broker.data_dir).get(client_id, (0, None))
        return offline_since is not None and cursor >= rowid

    def test_retained_message_survives_kill_9(self):
        pub = self.client()
        pub.publish("crash/ret", b"kept", 1, retain=True)
        pub.publish("crash/ret2", b"also", 2, retain=True)
        self.crash_and_restart()

        sub = self.client()
        sub.subscribe("crash/#", 1)
        got = sorted((m.topic, m.payload, m.retain, m.qos) for m in sub.get_messages(2))
        self.assertEqual(got, [("crash/ret", b"kept", True, 1), ("crash/ret2", b"also", True, 1)])
        sub.no_message(0.2)

    def test_retained_clear_survives_kill_9(self):
        pub = self.client()
        pub.publish("crash/cleared", b"old", 1, retain=True)
        pub.publish("crash/cleared", b"", 1, retain=True)  # clears it
        pub.publish("crash/replaced", b"v1", 1, retain=True)
        pub.publish("crash/replaced", b"v2", 1, retain=True)
        self.crash_and_restart()

        sub = self.client()
        sub.subscribe("crash/+", 1)
        message = sub.get_message()
        self.assertEqual((message.topic, message.payload, message.retain),
                         ("crash/replaced", b"v2", True))
        sub.no_message(0.3)

    def test_persistent_session_survives_kill_9(self):
        cid = self.new_id("persist")
        sub = self.client(cid, clean_session=False)
        self.assertEqual(sub.subscribe("crash/s/#", 1), 1)
        sub.publish("crash/s/self", b"seen", 1)  # delivered and acked before the crash
        self.assertEqual(sub.get_message().payload, b"seen")
        sub.disconnect()
        # Acks are saved in batches (100 ms): one acked within the last batch before a
        # crash is delivered again (at least once). Once its sessions file says it is
        # offline with the cursor at or past that message's row, the cursor has moved on.
        seen = message_rowids(self.broker.db_path, "crash/s/self")[-1]
        wait_for(lambda: self.saved_offline_past(cid, seen), 5.0,
                 message=f"{cid} saved offline with its cursor past row {seen}",
                 context=lambda: f"saved: {saved_sessions(self.broker.data_dir)}\n{self.context()}")

        pub = self.client()
        pub.publish("crash/s/a", b"before-1", 1)
        pub.publish("crash/s/b", b"before-2", 1)
        pub.publish("crash/s/q0", b"qos0", 0)  # QoS 0 is not kept for an offline client
        self.crash_and_restart()

        pub = self.client()
        pub.publish("crash/s/a", b"after-1", 1)
        back = self.client(cid, connect=False, clean_session=False)
        _, present = back.connect()
        self.assertTrue(present, "session_present=0 after the crash")
        got = [(m.topic, m.payload, m.qos) for m in back.get_messages(3)]
        self.assertEqual(got, [("crash/s/a", b"before-1", 1), ("crash/s/b", b"before-2", 1),
                               ("crash/s/a", b"after-1", 1)])
        back.no_message(0.3)
        # The subscription itself came back: live delivery without subscribing again.
        pub.publish("crash/s/live", b"live", 1)
        self.assertEqual(back.get_message().payload, b"live")

    def test_unacknowledged_delivery_is_resent_after_kill_9(self):
        """Delivered but never PUBACKed (the subscriber dropped): owed after the crash."""
        cid = self.new_id("persist")
        sub = self.client(cid, clean_session=False)
        sub.subscribe("crash/u", 1)
        sub.disconnect()
        pub = self.client()
        for i in range(20):
            pub.publish("crash/u", f"m{i}".encode(), 1)
        self.crash_and_restart()
        self.crash_and_restart()  # twice: what a restart rebuilt is kept as well

        back = self.client(cid, connect=False, clean_session=False)
        self.assertTrue(back.connect()[1])
        self.assertEqual([m.payload for m in back.get_messages(20)],
                         [f"m{i}".encode() for i in range(20)])
        back.no_message(0.3)

    def test_clean_session_leaves_nothing_behind(self):
        cid = self.new_id("clean")
        sub = self.client(cid, clean_session=True)
        sub.subscribe("crash/c", 1)
        sub.disconnect()
        self.crash_and_restart()

        paths = self.sessions_dbs()
        self.assertTrue(paths, "no sessions file in the data directory")
        for path in paths:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                for table in ("sessions", "subscriptions", "inflight"):
                    self.assertEqual(
                        db.execute(f"SELECT count(*) FROM {table}").fetchone()[0], 0,
                        f"{os.path.basename(path)}: {table}")
        again = self.client(cid, connect=False, clean_session=False)
        self.assertFalse(again.connect()[1], "a clean session came back after the crash")
