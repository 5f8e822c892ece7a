"""This node in Redis: its name, its heartbeat, and when its state must be written again.

A node's counts in Redis are kept under ``NODE/BOOT`` (``field``): the configured
``cluster.node_name`` and a boot id made at start, so a node restarted within its old
heartbeat's TTL never adds its new seats to the old run's (those lapse with the old
heartbeat). The heartbeat ``node:NODE/BOOT`` is set with a TTL of ``node_ttl`` and
renewed every third of it; the other nodes count this node's seats only while it lives.

``on_resync`` callbacks run when this node's state in Redis may be missing or stale:
each time the link is up again (Redis restarted empty, or other nodes dropped this
node's seats while it was away), and when a renewal finds the heartbeat had expired
(the reactor stalled past the TTL). The heartbeat is set before them, on the same
connection, so no other node drops what they write.
"""
import os

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["ClusterNode"]

log = Logger()


class ClusterNode:
    def __init__(self, reactor, link, prefix, name, ttl, boot_id=None):
        self._reactor = reactor
        self._link = link
        self.prefix = prefix
        self.name = name
        self.field = f"{name}/{boot_id or os.urandom(6).hex()}"
        self._ttl_ms = max(1, int(ttl * 1000))
        self._beat = LoopingCall(self._renew)
        self._beat.clock = reactor
        self._interval = ttl / 3.0
        self._on_resync = []
        link.on_up(self._connected)

    def key(self, *parts):
        """A key of the cluster: the prefix, then ``parts`` joined by ':'."""
        return self.prefix + ":".join(parts)

    @property
    def heartbeat_prefix(self):
        return self.key("node", "")

    def on_resync(self, callback):
        self._on_resync.append(callback)

    def start(self):
        self._beat.start(self._interval, now=False)

    def stop(self):
        """Stop renewing and remove the heartbeat (the others free this node's seats at
        their next look); a Deferred, which never fails."""
        if self._beat.running:
            self._beat.stop()
        d = self._link.call("DEL", self.heartbeat_prefix + self.field)
        d.addErrback(lambda _: None)
        return d

    def _set_heartbeat(self):
        return self._link.call("SET", self.heartbeat_prefix + self.field, self.name,
                               "PX", self._ttl_ms, "GET")

    def _connected(self):
        self._set_heartbeat().addErrback(lambda _: None)  # a lost link says so itself
        self._resync()

    def _renew(self):
        if not self._link.up:
            return
        d = self._set_heartbeat()
        d.addCallbacks(self._renewed, lambda _: None)

    def _renewed(self, previous):
        if previous is None and self._link.up:
            log.warn("cluster: this node's heartbeat had expired in Redis (the reactor "
                     "was held past cluster.node_ttl?); writing its seats again")
            self._resync()

    def _resync(self):
        for callback in list(self._on_resync):
            try:
                callback()
            except Exception:
                log.failure("cluster: writing this node's state again failed")
