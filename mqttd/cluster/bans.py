"""Bans across nodes: a ban made on one node is enforced, and kicks, on every other.

Each node's SQLite ``bans`` table stays what it is: the durable list this node enforces
(``GateSync`` reloads it), written by the operator's CLI and the flapping detector.
Redis carries the changes between the tables (``mqttd.cluster.scripts``: the ``bans``
hash, the ``banlog`` stream numbered by ``banseq``, the ``unbans`` of removals):

- out: every read of the local table (``observed``, through ``ObservedStore``) is
  compared with the one before; a ban added or changed here is written to Redis
  (``BAN_ADD``), one removed here (not lapsed) is removed there (``BAN_REMOVE``);
- in: every ``cluster.poll_interval`` the node reads the log from where it was; a ban
  from another node goes into force at once through ``Gate.ban`` (which kicks what it
  matches and stores it in this node's table, so it survives a restart and ``mqttd
  bans list`` shows it here too), a removal removes it from this node's table;
- whole: after every (re)connect, and when the log's numbers show a gap (it was
  trimmed past this node), the node reads the whole list (``BAN_SNAPSHOT``) and the two
  sides are merged, the later ``at`` winning; a ban removed elsewhere while this node
  was away (remembered ``cluster.removed_ban_ttl``) is removed here, not put back.

A node's own changes come back in the log and are skipped; bans that came from Redis
are not sent back (``_known`` holds what Redis has). Last writer wins.

Redis down: each node enforces its own table (and what it had received), its CLI
changes and flapping bans wait in its table (removals in memory) and go out when the
link is back; ``cluster_fallbacks{job="bans"}`` counts the changes that waited.
"""
import json

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mqttd.cluster.link import UNREACHABLE
from mqttd.cluster.scripts import BAN_ADD, BAN_REMOVE, BAN_SNAPSHOT
from mqttd.store.accounts import AccountsError
from mqttd.store.bans import canonical_ban_value
from mqttd.store.gate_records import BanRecord

__all__ = ["ObservedStore", "SharedBans", "ban_field", "ban_from_json", "ban_to_json"]

log = Logger()

_READ_COUNT = 1000  # log entries per read


def ban_field(kind, value):
    """The field of a ban in the ``bans`` hash (any characters in the value)."""
    return json.dumps([kind, value])


def ban_to_json(record):
    return json.dumps({"kind": record.kind, "value": record.value, "who": record.who,
                       "reason": record.reason, "at": record.at, "until": record.until},
                      sort_keys=True)


def ban_from_json(text):
    """The BanRecord in ``text``; ValueError if it is not one this node can enforce."""
    try:
        data = json.loads(text)
        record = BanRecord(data["kind"], data["value"], data["who"], data["reason"],
                           float(data["at"]),
                           None if data["until"] is None else float(data["until"]))
        if not isinstance(record.who, str) or not isinstance(record.reason, str):
            raise ValueError("who and reason must be text")
        if canonical_ban_value(record.kind, record.value) != record.value:
            raise ValueError(f"{record.value!r} is not written as stored")
    except (TypeError, KeyError, AttributeError, AccountsError, ValueError) as e:
        raise ValueError(f"not a ban: {e}") from None
    return record


class ObservedStore:
    """The gate's store, whose ``bans()`` reads are shown to ``on_bans(records)`` as
    well; every other call goes to ``store`` as it is."""

    def __init__(self, store, on_bans):
        self._store = store
        self._on_bans = on_bans

    def bans(self):
        d = self._store.bans()
        d.addCallback(self._seen)
        return d

    def _seen(self, records):
        self._on_bans(records)
        return records

    def __getattr__(self, name):
        return getattr(self._store, name)


class SharedBans:
    """``attach(gate, store)`` before ``start()``: the gate puts bans in force
    (``ban``), the store removes them (``remove_ban``)."""

    def __init__(self, node, link, clock, metrics, poll_interval, max_log, removed_ttl):
        self._node = node
        self._link = link
        self._clock = clock
        self._metrics = metrics
        self._max_log = max_log
        self._removed_ttl = removed_ttl
        self._keys = [node.key("bans"), node.key("unbans"), node.key("banlog"),
                      node.key("banseq"), node.key("banexp")]
        self._gate = self._store = None
        self._table = None  # field -> BanRecord: the local table, as last read
        self._known = {}  # field -> BanRecord: what Redis has, as far as this node knows
        self._removals = {}  # field -> when: removed here, not yet removed in Redis
        self._synced = False  # the whole list read on the current connection
        self._cursor = self._seq = None  # where this node is in the log
        self._reading = False
        self._poll = LoopingCall(self._read_log)
        self._poll.clock = clock
        self._interval = poll_interval
        link.on_up(self._resync)

    def attach(self, gate, store):
        self._gate = gate
        self._store = store

    def start(self):
        self._poll.start(self._interval, now=False)

    def stop(self):
        if self._poll.running:
            self._poll.stop()

    # -- out: this node's table ------------------------------------------------------------

    def observed(self, records):
        """A read of the local table (the bans in force there now)."""
        now = self._clock.seconds()
        table = {ban_field(r.kind, r.value): r for r in records}
        previous, self._table = self._table, table
        for field, record in table.items():
            if self._known.get(field) != record and (
                    previous is None or previous.get(field) != record):
                self._removals.pop(field, None)
                self._send_add(field, record, change=previous is not None)
        for field, record in (previous or {}).items():
            if field not in table and record.active(now):
                self._removals[field] = now
                self._send_remove(field)

    def _ready(self, change=True):
        """Whether a change can go out now; else it waits (counted, if a change)."""
        if self._link.up and self._synced:
            return True
        if change:
            self._metrics.cluster_fallbacks["bans"] += 1
        return False

    def _send_add(self, field, record, change=True):
        if not self._ready(change):
            return  # the merge after the reconnect sends it
        d = self._link.script(BAN_ADD, self._keys,
                              [field, ban_to_json(record), self._node.field, self._max_log,
                               repr(record.at),
                               "" if record.until is None else repr(record.until),
                               repr(self._clock.seconds())])
        d.addCallbacks(self._added, self._not_sent, callbackArgs=(field, record),
                       errbackArgs=("add", field))

    def _added(self, answer, field, record):
        if answer == 0:  # removed elsewhere after it was made here: removed here too
            log.info("cluster: ban of {kind} {value} was removed on another node after it "
                     "was made here; removing it here", kind=record.kind, value=record.value)
            self._remove_here(field, record)
            return
        self._known[field] = record
        if answer == 1:
            self._metrics.cluster_bans_sent += 1

    def _send_remove(self, field):
        if not self._ready():
            return  # kept in _removals: sent after the reconnect
        d = self._link.script(BAN_REMOVE, self._keys,
                              [field, repr(self._removals[field]), self._node.field,
                               self._max_log, repr(self._removed_ttl)])
        d.addCallbacks(self._removed, self._not_sent, callbackArgs=(field,),
                       errbackArgs=("removal", field))

    def _removed(self, answer, field):
        self._removals.pop(field, None)
        self._known.pop(field, None)
        if answer == 1:
            self._metrics.cluster_bans_sent += 1

    def _not_sent(self, failure, what, field):
        self._metrics.cluster_fallbacks["bans"] += 1
        if not failure.check(*UNREACHABLE):
            log.failure("cluster: a ban {what} ({field}) was not written to Redis; sent "
                        "again after the next reconnect", failure, what=what, field=field)

    # -- in: the log -----------------------------------------------------------------------

    def _read_log(self):
        if self._reading or not self._synced or not self._link.up:
            return
        self._reading = True
        d = self._link.call("XREAD", "COUNT", _READ_COUNT, "STREAMS", self._keys[2],
                            self._cursor)
        d.addCallback(self._log_read)
        d.addErrback(self._log_failed)
        d.addBoth(self._log_done)

    def _log_done(self, _):
        self._reading = False

    def _log_failed(self, failure):
        if not failure.check(*UNREACHABLE):
            log.failure("cluster: reading the ban log failed; reading the whole list",
                        failure)
            self._resync()

    def _log_read(self, reply):
        if not reply or not self._synced:
            return
        for entry_id, values in reply[0][1]:
            entry = dict(zip(values[::2], values[1::2]))
            seq = int(entry.get("seq", 0))
            if seq != self._seq + 1:  # trimmed past this node, or Redis restarted
                log.info("cluster: the ban log moved from {ours} to {seq}; reading the "
                         "whole list", ours=self._seq, seq=seq)
                self._resync()
                return
            self._seq, self._cursor = seq, entry_id
            if entry.get("origin") != self._node.field:
                self._apply(entry.get("op"), entry.get("field"), entry.get("ban"))

    def _apply(self, op, field, text):
        if op == "rm":
            self._known.pop(field, None)
            record = (self._table or {}).get(field)
            if record is not None:
                self._metrics.cluster_bans_received += 1
                self._remove_here(field, record)
            return
        try:
            record = ban_from_json(text)
        except ValueError as e:
            log.warn("cluster: skipped a ban in Redis this node cannot use: {why}", why=e)
            return
        if self._known.get(field) == record:
            return  # written again (a merge elsewhere): in force here already
        self._known[field] = record
        self._take(field, record)

    def _take(self, field, record):
        """Another node's ban, in force here now (and in this node's table)."""
        if (self._table or {}).get(field) == record or not record.active(
                self._clock.seconds()):
            return
        self._metrics.cluster_bans_received += 1
        self._gate.ban(record)

    def _remove_here(self, field, record):
        if self._table is not None:
            self._table.pop(field, None)  # not a removal of ours to send back
        d = self._store.remove_ban(record.kind, record.value)
        d.addErrback(lambda failure: log.failure(
            "cluster: could not remove the ban of {kind} {value} from this node's table",
            failure, kind=record.kind, value=record.value))

    # -- whole: after a (re)connect ----------------------------------------------------------

    def _resync(self):
        self._synced = False
        self._metrics.cluster_resyncs += 1
        d = self._link.script(BAN_SNAPSHOT, [self._keys[0], self._keys[2], self._keys[3]],
                              [])
        d.addCallback(self._merge)
        d.addErrback(self._log_failed_snapshot)

    def _log_failed_snapshot(self, failure):
        if not failure.check(*UNREACHABLE):
            log.failure("cluster: reading the ban list from Redis failed", failure)

    def _merge(self, reply):
        seq, cursor, flat = reply
        cluster = {}
        for field, text in zip(flat[::2], flat[1::2]):
            try:
                cluster[field] = ban_from_json(text)
            except ValueError as e:
                log.warn("cluster: skipped a ban in Redis this node cannot use: {why}",
                         why=e)
        self._seq, self._cursor = int(seq), cursor
        self._known = cluster
        self._synced = True
        for field in list(self._removals):
            self._send_remove(field)
        table = self._table or {}
        for field, record in cluster.items():
            mine = table.get(field)
            if field in self._removals or (mine is not None and mine.at > record.at):
                continue
            self._take(field, record)
        if self._table is None:
            return  # not read yet: the first read sends what differs
        for field, record in table.items():
            theirs = cluster.get(field)
            if theirs is None or (theirs != record and record.at > theirs.at):
                self._send_add(field, record, change=False)
