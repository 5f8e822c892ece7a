"""Persistent sessions move to the sessions file of the broker their client id reaches
when ``server.workers`` changes (mqttd.store.rehome), on real SQLite files."""
import os

from twisted.trial import unittest

from mqttd.edge.balancer import Balancer
from mqttd.store.rehome import rehome_sessions
from mqttd.store.sessions import connect_sessions, sessions_filename


def _put(data_dir, slot, client_id, saved_at=1.0, cursor=7):
    conn = connect_sessions(os.path.join(data_dir, sessions_filename(slot)))
    try:
        conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                     (client_id, cursor, 0.5, saved_at))
        conn.execute("INSERT INTO subscriptions VALUES (?, ?, 1)", (client_id, f"{client_id}/#"))
        conn.execute("INSERT INTO inflight VALUES (?, 9, 0, ?, 1, 0, 0)",
                     (client_id, f"key-{client_id}"))
    finally:
        conn.close()


def _rows(data_dir, slot):
    """{table: sorted rows} of one sessions file."""
    conn = connect_sessions(os.path.join(data_dir, sessions_filename(slot)))
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}"))
                for table in ("sessions", "subscriptions", "inflight")}
    finally:
        conn.close()


def _clients(data_dir, slot):
    return [row[0] for row in _rows(data_dir, slot)["sessions"]]


class RehomeTests(unittest.TestCase):
    def setUp(self):
        self.data_dir = self.mktemp()
        os.makedirs(self.data_dir)
        self.ids = [f"dev-{n}" for n in range(12)]
        self.tree = Balancer((1, 2))

    def test_the_one_process_sessions_go_to_their_workers_whole(self):
        for client_id in self.ids:
            _put(self.data_dir, 0, client_id)
        self.assertEqual(rehome_sessions(self.data_dir, self.tree.home), 12)
        self.assertEqual(_clients(self.data_dir, 0), [])
        for slot in (1, 2):
            want = sorted(c for c in self.ids if self.tree.home(c) == slot)
            self.assertTrue(want)  # both workers get some of the twelve
            rows = _rows(self.data_dir, slot)
            self.assertEqual([r[0] for r in rows["sessions"]], want)
            self.assertEqual(rows["sessions"], [(c, 7, 0.5, 1.0) for c in want])
            self.assertEqual(rows["subscriptions"], [(c, f"{c}/#", 1) for c in want])
            self.assertEqual(rows["inflight"], [(c, 9, 0, f"key-{c}", 1, 0, 0) for c in want])
        self.assertEqual(rehome_sessions(self.data_dir, self.tree.home), 0)  # settled

    def test_back_to_one_process_and_to_fewer_workers(self):
        for client_id in self.ids:
            _put(self.data_dir, self.tree.home(client_id), client_id)
        self.assertEqual(rehome_sessions(self.data_dir, self.tree.home), 0)
        self.assertEqual(rehome_sessions(self.data_dir, lambda client_id: 0), 12)
        self.assertEqual(_clients(self.data_dir, 0), sorted(self.ids))
        self.assertEqual(_clients(self.data_dir, 1) + _clients(self.data_dir, 2), [])

    def test_a_copy_left_by_a_crash_keeps_the_newer_save(self):
        older, newer = "dev-old-in-target", "dev-new-in-target"
        for client_id in (older, newer):
            home = self.tree.home(client_id)
            _put(self.data_dir, home, client_id, saved_at=2.0 if client_id == newer else 1.0,
                 cursor=20)
            _put(self.data_dir, 0, client_id, saved_at=1.5, cursor=15)
        self.assertEqual(rehome_sessions(self.data_dir, self.tree.home), 2)
        self.assertEqual(_clients(self.data_dir, 0), [])
        cursors = {}
        for slot in (1, 2):
            for client_id, cursor, _, _ in _rows(self.data_dir, slot)["sessions"]:
                cursors[client_id] = cursor
        self.assertEqual(cursors, {older: 15, newer: 20})
