"""Flapping across nodes: a client that reconnects to another node each round still flaps.

Behind a load balancer a device in a crash loop meets a different node at each
reconnect, and a detector per node would see 1/N of its disconnects. ``SharedFlapping``
has ``FlappingDetector``'s interface (``disconnected``) and counts each key's
disconnects in Redis (the ``FLAP`` script: a sorted set of the window's times, at most
``max_count`` of them, expiring with the window), so the ``max_count``-th disconnect
within ``window_time`` on any node bans the key there; the ban reaches the other nodes
as every ban does (``mqttd.cluster.bans``). What is banned, logged and counted is the
local detector's (``FlappingDetector.flapped``): the same reason, ``dry_run``, metrics.

Redis down, or a count it did not answer: that disconnect is counted by this node's own
detector instead (``cluster_fallbacks{job="flapping"}``), so a flapping client is still
banned while Redis is away, by the disconnects this node sees.
"""
import itertools

from twisted.logger import Logger

from mqttd.cluster.link import UNREACHABLE
from mqttd.cluster.scripts import FLAP
from mqttd.edge.flapping import UNNAMED, FlappingDetector

__all__ = ["SharedFlapping"]

log = Logger()


class SharedFlapping:
    """``FlappingDetector``'s arguments, and this node's ``node`` and ``link``."""

    def __init__(self, node, link, clock, config, on_ban, metrics, log_rate):
        self._node = node
        self._link = link
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self._local = FlappingDetector(clock, config, on_ban, metrics, log_rate)
        self._serial = itertools.count(1)  # members unique to this run of this node
        self._said_error = False

    def __len__(self):
        """Keys tracked in this node's memory (those counted while Redis was away)."""
        return len(self._local)

    def disconnected(self, client_id, username_key=None, host=None, who=UNNAMED):
        local = self._local
        keys = local.keys(client_id, username_key, host)
        if not keys:
            return
        now = self._clock.seconds()
        config = self._config
        for key in keys:
            if not self._link.up:
                self._metrics.cluster_fallbacks["flapping"] += 1
                local.count(key, now, client_id, host, who)
                continue
            kind, value = key
            member = f"{self._node.field}/{next(self._serial)}"
            d = self._link.script(FLAP, [self._node.key("flap", kind, value)],
                                  [repr(now), repr(config.window_time), config.max_count,
                                   member])
            d.addCallbacks(self._counted, self._not_counted,
                           callbackArgs=(key, now, client_id, host, who),
                           errbackArgs=(key, now, client_id, host, who))

    def _counted(self, flapped, key, now, client_id, host, who):
        self._said_error = False
        if flapped == 1:
            self._local.flapped(key, now, client_id, host, who)

    def _not_counted(self, failure, key, now, client_id, host, who):
        self._metrics.cluster_fallbacks["flapping"] += 1
        if not failure.check(*UNREACHABLE) and not self._said_error:
            self._said_error = True
            log.failure("cluster: Redis did not count a disconnect of {kind} {value}; "
                        "counted by this node alone", failure, kind=key[0], value=key[1])
        self._local.count(key, now, client_id, host, who)
