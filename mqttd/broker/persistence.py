"""What a broker keeps across a crash: the one interface ``Broker(persistence=...)`` takes.

Two implementations, with the same methods:

* ``MemoryPersistence`` keeps nothing (unit tests, tiny setups, a ``webhook.url`` with
  no local database): the broker forgets retained messages and sessions on exit.
* ``SqlitePersistence`` loads the retained set from mqttd.db (which the ingest writer
  keeps in the commit of each retained message, ``mqttd.store.retained``) and the
  persistent sessions from this broker's sessions-<slot>.db (``mqttd.store.sessions``),
  and saves sessions as they change.

The broker calls, on the reactor thread: ``load(broker)`` once before it admits a
client; ``changed(session)`` when a persistent session's state changed (created, came
or went offline, an ack); ``went_offline(session)`` first when its connection ended; ``subscribed(session)`` after a SUBSCRIBE, which returns a
Deferred fired once the subscription is committed (the SUBACK waits for it, as a
PUBACK waits for its message's commit) or None; ``removed(session)`` when it ends;
``released(session, packet_id, key)`` when a QoS 2 delivery got its PUBREC (the
session forgets the message, a save still needs its key); ``stop()`` at shutdown.

Saves are batched: the first change arms a timer of ``save_interval`` (100 ms), and
every session changed meanwhile is saved in one transaction; a SUBSCRIBE saves at once
(with whatever else is waiting). Deliveries do not mark a session changed: what is
delivered and not yet saved is after the cursor (``mqttd.store.sessions``) and owed
again after a crash, so a crash can redeliver (QoS 1: at least once), never lose. A
message queued for an OFFLINE session does: it may have been routed after a save whose
cursor passed its row (forwarded from another worker), and only a save brings the
cursor back before it.
"""
import os

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mqttd.broker.offline_cursors import OfflineCursors
from mqttd.broker.session import PUBREL_PENDING
from mqttd.broker.topics import SubscriptionTrie
from mqttd.store.sessions import InflightRow, SessionSave, SessionsDb, sessions_filename
from mqttd.store.sqlite import DB_FILENAME

__all__ = ["MemoryPersistence", "SqlitePersistence", "SAVE_INTERVAL"]

log = Logger()

SAVE_INTERVAL = 0.1  # seconds from the first change to its save
_RETRY_AFTER = 1.0  # after a failed save (a full disk, say): not a log line per 100 ms


class MemoryPersistence:
    """Keeps nothing: every method is a no-op; ``load`` finds nothing."""

    durable = False

    def load(self, broker):
        return succeed(None)

    def changed(self, session):
        pass

    def went_offline(self, session):
        pass

    def subscribed(self, session):
        return None

    def removed(self, session):
        pass

    def released(self, session, packet_id, key):
        pass

    def stop(self):
        return succeed(None)


class SqlitePersistence:
    """Retained set from mqttd.db, sessions in a ``mqttd.store.sessions.SessionsDb``.

    ``clock`` is an IReactorTime (the save timer, ``saved_at``); ``db`` the broker's
    SessionsDb (its file and the read-only view of mqttd.db).
    """

    durable = True

    @classmethod
    def in_data_dir(cls, reactor, data_dir, slot, **kwargs):
        """The persistence of broker ``slot`` (0: the single process; 1..N: the tree's
        workers): DATA_DIR/sessions-<slot>.db, and DATA_DIR/mqttd.db read-only."""
        db = SessionsDb(reactor, os.path.join(data_dir, sessions_filename(slot)),
                        messages_path=os.path.join(data_dir, DB_FILENAME))
        return cls(reactor, db, **kwargs)

    def __init__(self, clock, db, save_interval=SAVE_INTERVAL):
        self._clock = clock
        self._db = db
        self._interval = save_interval
        self._broker = None
        self._dirty = set()  # persistent sessions to save
        self._removed = set()  # client ids to delete
        self._released = {}  # session -> {packet id: key} of PUBREC'd QoS 2 deliveries
        self._offline = OfflineCursors()  # offline sessions: cursor floors, keys to look up
        self._snaps = []  # the running save's OfflineSnap per session (None: online)
        self._waiters = []  # Deferreds of SUBSCRIBEs, fired by the save that holds them
        self._timer = None
        self._saving = False
        self._stopped = False
        self._last = (set(), set())  # what the running save took: put back if it fails

    # -- start -------------------------------------------------------------------------

    def load(self, broker):
        """Open the files, read everything back and restore it into ``broker``."""
        self._broker = broker
        config = broker.config
        d = self._db.start()
        d.addCallback(lambda _: self._db.load(
            self._clock.seconds(), config.session_expiry, config.max_queued_messages,
            config.max_queued_bytes, _matcher))
        d.addCallback(self._restore)
        return d

    def _restore(self, loaded):
        broker = self._broker
        cursors = {stored.client_id: stored.cursor for stored in loaded.sessions}
        for session, released in broker.restore(loaded):
            if released:
                self._released[session] = released
            self._offline.restored(session, cursors[session.client_id])
        log.info("restored {retained} retained messages and {sessions} persistent sessions "
                 "({queued} queued messages) from {path}; {expired} expired",
                 retained=len(loaded.retained), sessions=len(loaded.sessions),
                 queued=sum(len(s.queue) for s in loaded.sessions),
                 expired=loaded.expired, path=self._db.path)

    # -- changes -----------------------------------------------------------------------

    def changed(self, session):
        self._dirty.add(session)
        self._schedule(self._interval)

    def went_offline(self, session):
        """Read the newest rowid now: while ``session`` stays offline its cursor never
        passes it. Its saves read rowids later, of messages maybe still on their way to
        it (from another worker, or behind a slow ingest answer); nothing committed
        after it went offline was delivered to it, so nothing is owed twice."""
        self._offline.went_offline(session)
        d = self._db.last_rowid()
        d.addCallback(lambda rowid: self._offline.floor(session, rowid))
        d.addErrback(lambda f: log.failure("sessions: reading the newest rowid failed", f))

    def subscribed(self, session):
        self._dirty.add(session)
        d = Deferred()
        self._waiters.append(d)
        self._schedule(0)
        return d

    def removed(self, session):
        self._dirty.discard(session)
        self._released.pop(session, None)
        self._offline.forget(session)
        self._removed.add(session.client_id)
        self._schedule(self._interval)

    def released(self, session, packet_id, key):
        self._released.setdefault(session, {})[packet_id] = key

    def stop(self):
        """Save what changed, then close the files."""
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        d = self._save_all()
        d.addBoth(lambda _: self._db.close())
        return d

    def _save_all(self):
        if not (self._dirty or self._removed or self._saving):
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        if not self._saving:
            self._save()
        d.addErrback(lambda f: log.failure("saving sessions at stop failed", f))
        return d

    # -- saves -------------------------------------------------------------------------

    def _schedule(self, delay):
        if self._saving or self._stopped:
            return  # the running save re-arms when it ends; stop() saved the rest
        timer = self._timer
        if timer is not None:
            if delay or timer.getTime() <= self._clock.seconds():
                return
            timer.cancel()
        self._timer = self._clock.callLater(delay, self._save)

    def _save(self):
        self._timer = None
        if not (self._dirty or self._removed) and not self._waiters:
            return
        self._saving = True
        # The newest rowid is read BEFORE the snapshot: what commits after it is after
        # every cursor this save writes.
        waiters, self._waiters = self._waiters, []  # before the chain: it may run at once
        d = self._db.last_rowid()
        d.addCallback(self._write)
        d.addCallbacks(self._written, self._failed, callbackArgs=(waiters,),
                       errbackArgs=(waiters,))
        d.addErrback(lambda f: log.failure("sessions: finishing a save failed", f))

    def _write(self, last_rowid):
        broker = self._broker
        dirty, self._dirty = self._dirty, set()
        removed, self._removed = self._removed, set()
        self._snaps = []
        saves = [self._snapshot(session) for session in dirty
                 if broker.sessions.get(session.client_id) is session]
        self._last = (dirty, removed)
        return self._db.save(last_rowid, saves, sorted(removed), self._clock.seconds())

    def _written(self, cursors, waiters):
        self._saving = False
        self._offline.written(self._snaps, cursors)
        self._snaps = []
        for d in waiters:
            d.callback(None)
        self._again(self._interval)

    def _failed(self, failure, waiters):
        self._saving = False
        self._snaps = []  # nothing written: the next save looks every key up again
        log.failure("saving persistent sessions to {path} failed; retrying", failure,
                    path=self._db.path)
        dirty, removed = self._last
        self._dirty |= {s for s in dirty if self._broker.sessions.get(s.client_id) is s}
        self._removed |= removed
        for d in waiters:
            d.errback(failure)
        self._again(_RETRY_AFTER)

    def _again(self, delay):
        if self._waiters and self._stopped:
            self._save()  # stop() waits for this one
        elif self._waiters:
            self._schedule(0)
        elif self._dirty or self._removed:
            self._schedule(delay)

    def _snapshot(self, session):
        """What ``session`` holds now, as plain values for the save's thread."""
        subscriptions = session.subscriptions
        queue = session.queue
        released = self._released.get(session)
        floor, queued_keys, snap = self._offline.snapshot(session, queue)
        self._snaps.append(snap)
        rows = []
        inflight = session.inflight
        if inflight:
            for pid, entry in inflight.items():
                if entry is PUBREL_PENDING:
                    key = released.get(pid) if released else None
                    rows.append(InflightRow(pid, key, 2, False, True))
                else:
                    message, qos, retain = entry
                    rows.append(InflightRow(pid, message.key, qos, bool(retain), False))
        if released:
            # Forget the keys of PUBRELs completed since.
            for pid in [pid for pid in released
                        if not inflight or inflight.get(pid, 0) is not PUBREL_PENDING]:
                del released[pid]
        return SessionSave(
            session.client_id,
            self._broker.stored_sessions.offline_since(session),
            tuple(subscriptions.items()) if subscriptions else (),
            queued_keys, tuple(rows), floor)


def _matcher(subscriptions):
    """``match(topic) -> {client_id: granted}`` for ((client_id, ((filter, qos), ...)),
    ...), with the broker's own topic rules (runs on the sessions thread)."""
    trie = SubscriptionTrie()
    for client_id, filters in subscriptions:
        for topic_filter, qos in filters:
            trie.subscribe(topic_filter, client_id, qos)
    return trie.match
