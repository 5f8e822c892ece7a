"""The cluster's state for one appliance: what the gate is built with when Redis is set.

``ClusterState`` is the gate's ``shared`` (``mqttd.edge.gate.Gate``): it makes the
tickets (``SharedTickets``) and the flapping detector (``SharedFlapping``) in place of
the in-memory ones, wraps the gate's store so the bans it reads go out to the other
nodes (``SharedBans``), and starts and stops the link, the heartbeat and the ban log's
poller. Built by the role that owns the gate (``mqttd.gatekeeping``) from ``[cluster]``
values handed in; this package never reads the config.
"""
from twisted.internet.defer import succeed
from twisted.logger import Logger

from mqttd.cluster.bans import ObservedStore, SharedBans
from mqttd.cluster.flapping import SharedFlapping
from mqttd.cluster.link import RedisLink
from mqttd.cluster.node import ClusterNode
from mqttd.cluster.seats import SharedTickets

__all__ = ["ClusterState"]

log = Logger()


class ClusterState:
    """``address`` a ``mqttd.urls.RedisAddress``; ``cluster`` the ``[cluster]`` values
    (duck-typed); ``endpoint`` (tests) the way to Redis instead of TCP."""

    def __init__(self, reactor, address, cluster, metrics, endpoint=None, boot_id=None):
        self._reactor = reactor
        self.link = RedisLink(reactor, address, metrics, cluster.timeout,
                              cluster.connect_timeout, cluster.reconnect_initial,
                              cluster.reconnect_max, endpoint=endpoint)
        self.node = ClusterNode(reactor, self.link, cluster.key_prefix, cluster.node_name,
                                cluster.node_ttl, boot_id=boot_id)
        self.bans = SharedBans(self.node, self.link, reactor, metrics, cluster.poll_interval,
                               cluster.max_ban_log, cluster.removed_ban_ttl)
        self._address = address

    # -- what the gate is built with -----------------------------------------------------

    def tickets(self, metrics, on_released):
        return SharedTickets(self.node, self.link, metrics, on_released)

    def flapping(self, clock, config, on_ban, metrics, log_rate):
        return SharedFlapping(self.node, self.link, clock, config, on_ban, metrics,
                              log_rate)

    def observe(self, store):
        """``store`` as the gate should use it: its ban reads shown to the cluster."""
        return ObservedStore(store, self.bans.observed)

    def attach(self, gate, store):
        """The gate that puts the other nodes' bans in force, the store that removes."""
        self.bans.attach(gate, store)

    # -- life ------------------------------------------------------------------------------

    def start(self):
        log.info("cluster: node {node} sharing quotas, flapping and bans in Redis at "
                 "{address}", node=self.node.field, address=str(self._address))
        self.node.start()
        self.bans.start()
        self.link.start()

    def stop(self):
        """Remove the heartbeat (best effort, within the link's timeout), then close."""
        self.bans.stop()
        d = self.node.stop() if self.link.up else succeed(None)
        d.addBoth(lambda _: self.link.stop())
        return d
