"""compare.py's durability check compares sets, not counts.

A count cannot see one acknowledged message missing while another is stored twice: the
totals still agree. The load generator now tags every payload with its connection and
sequence number, and the check matches rows to messages: these tests build a real
mqttd.db (mqttd's own schema, real SQLite) with such holes and expect them named.
"""
import os
import sqlite3
import sys

import sqlite_utils
from twisted.trial import unittest

from mqttd.store.schema import migrate

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)  # appended: the benchmarks' flat module names never shadow

import common  # noqa: E402
import durability  # noqa: E402
from publish_streams import Streams  # noqa: E402

PREFIX = "mqttd-qos1-w10-r0"


def loadgen_result(*clients):
    """The part of a loadgen.py result the check reads: [client_id, index, sent, acked]."""
    return {"sent": sum(c[1] for c in clients),
            "clients": [["%s-%d" % (PREFIX, index), index, sent, acked]
                        for index, sent, acked in clients]}


class SetCheckTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp() + ".db")
        db = sqlite_utils.Database(sqlite3.connect(self.path, isolation_level=None))
        migrate(db)
        db.conn.close()
        self.rows = 0

    def store(self, index, seq, client_index=None):
        """One row as mqttd stores it: client ``index``'s message number ``seq``."""
        client_index = index if client_index is None else client_index
        payload = common.payload_tag(client_index, seq) + b"x" * 44
        self.rows += 1
        conn = sqlite3.connect(self.path)
        with conn:
            conn.execute("INSERT INTO messages (key, client_id, username, topic, payload, qos, "
                         "retain, received_at, committed_at) VALUES (?, ?, NULL, ?, ?, 1, 0, "
                         "1.0, 1.0)", ("k-%d" % self.rows, "%s-%d" % (PREFIX, index),
                                       "bench/loadgen", payload))
        conn.close()

    def test_a_missing_and_a_duplicated_row_are_caught_where_the_counts_agree(self):
        for seq in (0, 1, 3, 3, 4):  # seq 2 acknowledged but absent, seq 3 stored twice
            self.store(0, seq)
        for seq in range(5):
            self.store(1, seq)
        result = loadgen_result((0, 5, 5), (1, 5, 5))
        self.assertEqual(durability.count_rows(self.path, PREFIX), 10)  # = PUBACKs: counts agree
        verdict = durability.check_run(self.path, PREFIX, result, 1, settle=0)
        self.assertEqual((verdict["ok"], verdict["missing"], verdict["duplicated"],
                          verdict["foreign"]), (False, 1, 1, 0))
        self.assertIn("DURABILITY VIOLATED", verdict["text"])
        self.assertIn("%s-0 seq 2 acknowledged, no row" % PREFIX, verdict["text"])
        self.assertIn("%s-0 seq 3 stored 2 times" % PREFIX, verdict["text"])

    def test_rows_that_match_no_message_sent_are_foreign(self):
        self.store(0, 0)
        self.store(0, 1, client_index=1)  # client 1's payload under client 0's id
        self.store(0, 7)  # a sequence number client 0 never sent
        self.store(3, 0)  # a client of the run prefix that the run never had
        verdict = durability.check_run(self.path, PREFIX, loadgen_result((0, 2, 1)), 1, settle=0)
        self.assertEqual((verdict["ok"], verdict["missing"], verdict["foreign"]), (False, 0, 3))

    def test_every_acknowledged_message_once_is_ok(self):
        for seq in range(4):  # seq 3 was sent and stored, its PUBACK not yet read: fine
            self.store(0, seq)
        verdict = durability.check_run(self.path, PREFIX, loadgen_result((0, 4, 3)), 1, settle=0)
        self.assertEqual((verdict["ok"], verdict["acked"], verdict["rows"]), (True, 3, 4))
        self.assertTrue(verdict["text"].startswith("durability OK"))

    def test_qos0_may_lose_rows_but_never_store_one_twice(self):
        self.store(0, 0)
        self.assertTrue(durability.check_run(self.path, PREFIX, loadgen_result((0, 3, None)),
                                             0, settle=0)["ok"])
        self.store(0, 0)
        verdict = durability.check_run(self.path, PREFIX, loadgen_result((0, 3, None)), 0, settle=0)
        self.assertEqual((verdict["ok"], verdict["missing"], verdict["duplicated"]), (False, 2, 1))

    def test_a_message_sent_twice_may_be_stored_twice(self):
        clients = [durability.Client("c-0", 0, 2, 2)]
        rows = [("c-0", common.payload_tag(0, s)) for s in (0, 1, 1)]
        self.assertFalse(durability.check(rows, clients, 1).ok)
        self.assertTrue(durability.check(rows, clients, 1, resent={("c-0", 1): 1}).ok)


def publishes(data):
    """(packet id, payload) of each PUBLISH in ``data`` (QoS 0: packet id None)."""
    out, i = [], 0
    while i < len(data):
        header, rl, mult, j = data[i], 0, 1, i + 1
        while True:
            rl += (data[j] & 0x7F) * mult
            mult <<= 7
            j += 1
            if not data[j - 1] & 0x80:
                break
        body = data[j:j + rl]
        tlen = int.from_bytes(body[:2], "big")
        if header & 0x06:
            out.append((int.from_bytes(body[2 + tlen:4 + tlen], "big"), body[4 + tlen:]))
        else:
            out.append((None, body[2 + tlen:]))
        i = j + rl
    return out


class _Conn:
    def __init__(self, index):
        self.index = index
        self.pub_pos = 0


class UniquePayloadTests(unittest.TestCase):
    def test_qos1_payloads_name_connection_and_sequence_across_blocks(self):
        streams = Streams("bench/%topic", 64, 1, 10)
        conn = _Conn(37)
        streams.attach(conn)
        data = b"".join(bytes(streams.take(conn, n)) for n in [7, 10] * 60)  # 1,020 > 256 * 3
        got = publishes(data)
        self.assertEqual([common.parse_tag(p) for _, p in got], [(37, s) for s in range(1020)])
        self.assertEqual([pid for pid, _ in got], [s % streams.M + 1 for s in range(1020)])
        self.assertEqual({len(p) for _, p in got}, {64})

    def test_qos0_blocks_continue_the_sequence(self):
        streams = Streams("t", 20, 0, 1)
        conn = _Conn(2)
        streams.attach(conn)
        data = bytes(conn.pub)
        streams.qos0_block_done(conn)
        data += bytes(conn.pub)
        got = publishes(data)
        self.assertEqual([common.parse_tag(p) for _, p in got],
                         [(2, s) for s in range(2 * streams.per_block)])

    def test_a_payload_too_small_for_its_tag_is_refused(self):
        self.assertRaises(ValueError, Streams, "t", common.TAG_LEN - 1, 1, 10)
