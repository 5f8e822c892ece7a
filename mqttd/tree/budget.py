"""How much of the forwarded publishes one channel may hold, and what is dropped past it.

Both writers of forwarded publishes (a worker to the master, the master to each worker)
keep one per channel, so a stalled peer costs at most ``server.max_forward_bytes`` of
memory on top of the transport's own 64 KiB, and never stalls anyone else. The bound is
on ``backlog``, the bytes written since the transport's buffer filled up.

Past half of it QoS 0 is dropped (best effort, and a QoS 0 flood must leave the other
half to QoS 1 and 2); past all of it QoS 1 and 2 are dropped too, counted as a full
subscriber queue is: the message is in SQLite already (it was committed before it was
routed), so what is lost is one delivery to a subscriber of another worker, never a
message. Retained values are never dropped: the writers keep the topics they owe and
send the newest value once the channel drains (``mqttd.tree.crossing``, ``relay``).
"""
from twisted.logger import Logger

__all__ = ["ForwardBudget"]

log = Logger()


class ForwardBudget:
    """``fits`` decides on one forwarded publish; ``dropped`` counts one not sent."""

    def __init__(self, max_bytes, metrics, peer):
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._peer = peer  # for the log: "the master", "worker 2"
        self._dropping = False

    def fits(self, channel, size, qos):
        """May a frame of ``size`` bytes of a ``qos`` publish go on ``channel`` now?"""
        limit = self.max_bytes if qos else self.max_bytes // 2
        if channel.backlog + size <= limit:
            if self._dropping and not channel.backlog:
                self._dropping = False
                log.info("forwarding to {peer} again", peer=self._peer)
            return True
        return False

    def dropped(self, qos):
        self._metrics.tree_forward_dropped[str(qos)] += 1
        if not self._dropping:
            self._dropping = True  # logged once a burst, like a full subscriber queue
            log.warn("channel to {peer} full (server.max_forward_bytes {limit}): dropping "
                     "forwarded publishes", peer=self._peer, limit=self.max_bytes)
