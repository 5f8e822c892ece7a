"""mqttd.db's ``retained`` table, kept by the commit of the messages themselves
(mqttd.store.retained): same transaction, commit order, retries and late commits."""
from twisted.trial.unittest import TestCase

from mqttd.store.retained import load_retained
from mqttd.store.sqlite import KeyConflict
from tests.support.store import fired, inline_store, row

BOOT_A = "a" * 16
BOOT_B = "b" * 16


def key(boot, counter):
    return f"{boot}-{counter:012x}-{'0' * 16}"


class RetainedTableTests(TestCase):
    def setUp(self):
        self.store, self.clock, self.pool = inline_store(self)

    def retained(self):
        return fired(self.store.run(lambda db: [(t, p, q, k) for t, p, q, k, _ in
                                                load_retained(db.conn)]))

    def insert(self, *rows):
        return fired(self.store.insert_batch(list(rows)))

    def test_a_retained_row_is_kept_in_the_same_commit(self):
        self.insert(row(key(BOOT_A, 1), topic="r/1", payload=b"v1", retain=True),
                    row(key(BOOT_A, 2), topic="r/2", payload=b"plain"))
        self.assertEqual(self.retained(), [("r/1", b"v1", 1, key(BOOT_A, 1))])

    def test_commit_order_decides_and_an_empty_payload_clears(self):
        fired(self.store.insert_batches([
            [row(key(BOOT_A, 1), topic="r/1", payload=b"v1", retain=True),
             row(key(BOOT_A, 2), topic="r/1", payload=b"v2", retain=True)],
            [row(key(BOOT_B, 1), topic="r/2", payload=b"x", retain=True),
             row(key(BOOT_B, 2), topic="r/2", payload=b"", retain=True)]]))
        self.assertEqual(self.retained(), [("r/1", b"v2", 1, key(BOOT_A, 2))])

    def test_a_failed_commit_keeps_no_retained_row(self):
        self.insert(row(key(BOOT_A, 1), topic="other", payload=b"stored"))
        forged = row(key(BOOT_A, 1), topic="r/1", payload=b"forged", retain=True)
        self.assertRaises(KeyConflict, self.insert, forged)
        self.assertEqual(self.retained(), [])

    def test_a_retried_message_changes_nothing(self):
        old = row(key(BOOT_A, 1), topic="r/1", payload=b"old", retain=True)
        self.insert(old)
        self.insert(row(key(BOOT_B, 1), topic="r/1", payload=b"new", retain=True))
        self.insert(old)  # the retry of a batch whose answer was lost
        self.assertEqual([p for _, p, _, _ in self.retained()], [b"new"])

    def test_an_older_message_of_the_same_run_committed_late_does_not_win(self):
        """A client's older retained PUBLISH, retried across a reconnect, commits after
        its newer one; a clear leaves a tombstone so it cannot come back either."""
        self.insert(row(key(BOOT_A, 5), topic="r/1", payload=b"newer", retain=True))
        self.insert(row(key(BOOT_A, 3), topic="r/1", payload=b"older", retain=True))
        self.assertEqual([p for _, p, _, _ in self.retained()], [b"newer"])
        self.insert(row(key(BOOT_A, 9), topic="r/2", payload=b"", retain=True))
        self.insert(row(key(BOOT_A, 8), topic="r/2", payload=b"stale", retain=True))
        self.assertEqual([t for t, _, _, _ in self.retained()], ["r/1"])
        # Another run's message (a restarted broker) is simply the later commit.
        self.insert(row(key(BOOT_B, 1), topic="r/2", payload=b"next run", retain=True))
        self.assertEqual(sorted(t for t, _, _, _ in self.retained()), ["r/1", "r/2"])
