"""The lifetime of persistent sessions: ``session_expiry`` and ``max_sessions``.

A clean_session=0 client id keeps its session (subscriptions in the trie, queued
messages) while it is offline, so without a bound every id that ever connected would
stay in memory for good. Two bounds, as EMQX has them:

* an offline persistent session expires ``session_expiry`` seconds after its last
  connection ended (EMQX's session expiry interval, 2 h by default), unless the client
  comes back first; all offline sessions share one timer (``Deadlines``);
* at most ``max_sessions`` persistent sessions are stored, online or offline. A new one
  past the bound evicts the session that has been offline longest: that is an early
  expiry of the session that would expire first, and it keeps the broker serving the
  devices that are here now, where refusing them would let stale sessions lock live
  devices out for up to ``session_expiry``. Only when every stored session is online
  is the new one refused (CONNACK 0x03, server unavailable): there is nothing to give up.
"""
from twisted.logger import Logger

from mqttd.broker.deadlines import Deadlines

__all__ = ["StoredSessions"]

log = Logger()


class StoredSessions:
    """Counts the persistent sessions of a broker and expires or evicts offline ones.

    ``discard(session)`` is the broker's: it frees a session (trie, queue) and then
    calls ``removed`` here. It counts into ``metrics`` (``mqtt_sessions_*``).
    """

    __slots__ = ("_offline", "_discard", "limit", "count", "_metrics")

    def __init__(self, clock, expiry, limit, discard, metrics):
        self._offline = Deadlines(clock, expiry, self._expire)
        self._discard = discard
        self.limit = limit
        self.count = 0  # persistent sessions stored, online or offline
        self._metrics = metrics

    @property
    def offline(self):
        """Persistent sessions stored with no connection."""
        return len(self._offline)

    def make_room(self):
        """Room for one more persistent session? Evicts the longest offline one if the
        bound is reached; False (and counted) if every stored session is online."""
        if self.count < self.limit:
            return True
        oldest = self._offline.oldest()
        if oldest is None:
            self._metrics.mqtt_sessions_refused += 1
            log.warn("max_sessions ({limit}) reached and every session is online: "
                     "refusing a new persistent session", limit=self.limit)
            return False
        self._metrics.mqtt_sessions_evicted += 1
        log.info("max_sessions ({limit}) reached: evicting {client_id}, the session "
                 "offline longest", limit=self.limit, client_id=oldest.client_id)
        self._discard(oldest)
        return True

    def added(self, session):
        self.count += 1

    def removed(self, session):
        self.count -= 1
        self._offline.discard(session)

    def went_offline(self, session, since=None):
        self._offline.add(session, since)

    def offline_since(self, session):
        """When ``session`` went offline, or None while it is online."""
        deadline = self._offline.deadline(session)
        return None if deadline is None else deadline - self._offline.timeout

    def came_online(self, session):
        self._offline.discard(session)

    def _expire(self, session):
        self._metrics.mqtt_sessions_expired += 1
        log.info("session {client_id} expired: offline for {expiry:g} s (session_expiry)",
                 client_id=session.client_id, expiry=self._offline.timeout)
        self._discard(session)
