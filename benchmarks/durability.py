"""After each mqttd run: is every acknowledged message in mqttd.db, once?

Counting rows is not enough: one acknowledged message missing and another stored twice
leave the count right. So every payload the load generator sends carries its
connection's index and its sequence number on that connection (common.TAG), and the
check compares sets, per connection:

* every acknowledged (client, sequence) is a row (PUBACKs come in order, so a client
  with ``acked`` PUBACKs had sequences 0..acked-1 acknowledged);
* no (client, sequence) is a row twice, unless that message was sent twice (the load
  generator never retransmits; ``resent`` says how often one was sent again);
* no row is foreign: each one names a client of the run, carries a tag, the tag's index
  is that client's, and its sequence number was sent.

For QoS 0 nothing is promised, so a missing row is counted but is no violation; a
duplicate or a foreign row still is.
"""
import collections
import sqlite3
import time

import attr

import common

EXAMPLES = 3  # of each kind of violation, in the verdict's text


@attr.s(frozen=True, slots=True)
class Client:
    """What the load generator reports of one connection."""

    client_id = attr.ib()
    index = attr.ib()
    sent = attr.ib()
    acked = attr.ib()  # None for QoS 0


@attr.s(frozen=True, slots=True)
class Verdict:
    qos = attr.ib()
    sent = attr.ib()
    acked = attr.ib()
    rows = attr.ib()
    missing = attr.ib()  # acknowledged (QoS 1) or written (QoS 0) but no row
    duplicated = attr.ib()  # rows beyond the number of times their message was sent
    foreign = attr.ib()  # rows that match no message of the run
    examples = attr.ib(default=())

    @property
    def ok(self):
        return not self.duplicated and not self.foreign and (self.qos == 0 or not self.missing)

    def text(self):
        if self.qos:
            what = "%d acked: %d rows, %d missing, %d duplicated, %d foreign" % (
                self.acked, self.rows, self.missing, self.duplicated, self.foreign)
        else:
            what = "%d written: %d rows (%d not stored: QoS 0 promises nothing), %d " \
                   "duplicated, %d foreign" % (self.sent, self.rows, self.missing,
                                               self.duplicated, self.foreign)
        if self.ok:
            return "durability OK (%s)" % what
        return "DURABILITY VIOLATED (%s; e.g. %s)" % (what, "; ".join(self.examples))


def clients_from(result):
    """Client records from a loadgen.py result (its "clients" list)."""
    return [Client(*c) for c in result.get("clients") or ()]


def check(rows, clients, qos, resent=None):
    """The verdict for ``rows`` (client_id, payload) against the run's ``clients``;
    ``resent`` maps (client_id, sequence) to how many times it was sent again."""
    by_id = {c.client_id: c for c in clients}
    resent = resent or {}
    seen = collections.Counter()
    n_rows = foreign = 0
    examples = []
    for client_id, payload in rows:
        n_rows += 1
        client = by_id.get(client_id)
        tag = common.parse_tag(bytes(payload))
        if client is None or tag is None or tag[0] != client.index or tag[1] >= client.sent:
            foreign += 1
            if foreign <= EXAMPLES:
                examples.append("foreign row of %s, payload %r" % (client_id, bytes(payload)))
            continue
        seen[client_id, tag[1]] += 1
    duplicated = 0
    for (client_id, seq), n in sorted(seen.items()):
        extra = n - 1 - resent.get((client_id, seq), 0)
        if extra > 0:
            if not duplicated:
                examples.append("%s seq %d stored %d times" % (client_id, seq, n))
            duplicated += extra
    missing = 0
    for c in clients:
        promised = c.acked if qos else c.sent
        absent = [s for s in range(promised) if (c.client_id, s) not in seen]
        if absent and qos and not missing:
            examples.append("%s seq %d acknowledged, no row" % (c.client_id, absent[0]))
        missing += len(absent)
    return Verdict(qos=qos, sent=sum(c.sent for c in clients),
                   acked=sum(c.acked or 0 for c in clients) if qos else None, rows=n_rows,
                   missing=missing, duplicated=duplicated, foreign=foreign,
                   examples=tuple(examples))


def _connect(db_path, timeout):
    # read-only: a WAL reader never blocks the writer
    return sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=timeout)


def count_rows(db_path, prefix, timeout=10.0):
    """Rows of clients '<prefix>-*' in mqttd.db."""
    conn = _connect(db_path, timeout)
    try:
        # GLOB is case-sensitive, so it can use the (client_id, received_at) index
        return conn.execute("SELECT count(*) FROM messages WHERE client_id GLOB ?",
                            (prefix + "-*",)).fetchone()[0]
    finally:
        conn.close()


def read_rows(db_path, prefix, timeout=10.0):
    """(client_id, the payload's tag) of every row of clients '<prefix>-*'."""
    conn = _connect(db_path, timeout)
    try:
        return conn.execute("SELECT client_id, substr(payload, 1, ?) FROM messages "
                            "WHERE client_id GLOB ?", (common.TAG_LEN, prefix + "-*")).fetchall()
    finally:
        conn.close()


def check_run(db_path, prefix, result, qos, settle):
    """The verdict of one run as a dict (for the JSON record); for QoS 0 (nothing acked)
    after waiting up to ``settle`` s for the backlog to commit, so the next run starts clean."""
    try:
        if qos == 0:
            deadline = time.monotonic() + settle
            while (count_rows(db_path, prefix) < result.get("sent", 0)
                   and time.monotonic() < deadline):
                time.sleep(0.25)
        verdict = check(read_rows(db_path, prefix), clients_from(result), qos)
    except sqlite3.Error as e:
        return {"ok": False, "error": "sqlite: %s" % e, "text": "DURABILITY NOT CHECKED: sqlite: %s" % e}
    out = attr.asdict(verdict)
    out["examples"] = list(verdict.examples)
    out.update(ok=verdict.ok, text=verdict.text())
    return out
