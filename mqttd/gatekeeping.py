"""The gate of one appliance as a service: its store, the gate, and the poller.

Built by the role that owns the MQTT listeners: the single process (the broker asks
it as its authenticator) or the master of the tree (``Master._on_connect`` asks it,
and the workers trust the answer). It opens DATA_DIR/mqttd.db, where the accounts,
tokens and bans live (prepared here, before the reactor runs, so a database from a
newer mqttd stops start-up in one line), loads the bans, and then follows the
operator's changes every ``auth.reload_interval`` (``mqttd.edge.gate_sync``).

A CONNECT that arrives before the first load ended waits for it: judged against no
bans, it could let in a client banned a second ago. A store that cannot be opened stops
mqttd (it could not tell a good token from a bad one); a first poll that fails is
logged, and the poller tries again every tick.

With ``cluster.redis_url`` set, the gate's quotas, flapping windows and bans are shared
with the other appliances in Redis (``mqttd.cluster.state``); the poller's ban reads go
out to them, and theirs come in.
"""
import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mqttd.broker.lograte import LogRateLimit
from mqttd.cluster.state import ClusterState
from mqttd.edge.gate import Gate
from mqttd.edge.gate_sync import GateSync
from mqttd.ingest.service import exit_failed, prepare_database
from mqttd.store.bans import bans_in_file
from mqttd.store.gate_store import GateStore
from mqttd.store.sqlite import DB_FILENAME
from mqttd.urls import redis_address

__all__ = ["GateService"]

log = Logger()


class GateService(Service):
    """``kick(client_id, reason, account)`` closes a live connection the gate now
    refuses; it may be set later (``set_kick``), once the thing that can kick exists."""

    def __init__(self, reactor, config, metrics, kick=None):
        self._reactor = reactor
        path = os.path.join(config.server.data_dir, DB_FILENAME)
        prepare_database(path)
        # Its refusals log within their own per-address budget of lines.
        log_rate = LogRateLimit(reactor, config.broker.log_lines_per_ip,
                                config.broker.log_lines_window, metrics=metrics)
        self.store = GateStore(reactor, path, metrics)
        self.cluster = None  # the state shared with other nodes in Redis, if configured
        polled = self.store
        if config.cluster.redis_url:
            self.cluster = ClusterState(reactor, redis_address(config.cluster.redis_url),
                                        config.cluster, metrics)
            polled = self.cluster.observe(self.store)
        self.gate = Gate(reactor, config.auth, config.flapping_detect, self.store, metrics,
                         log_rate, kick, shared=self.cluster)
        if self.cluster is not None:
            self.cluster.attach(self.gate, self.store)
        # The bans in force now, read before the reactor runs: the door checks IP bans
        # at accept from the first socket on, before the first poll has ended.
        mark = self.gate.reloading_bans()
        self.gate.reload_bans(bans_in_file(path, reactor.seconds()), mark)
        self._sync = GateSync(reactor, polled, self.gate, metrics,
                              config.auth.reload_interval)
        self._loaded = False
        self._waiting = []  # Deferreds of CONNECTs that came before the first load

    @property
    def bans(self):
        """The bans in force, for the door's check at accept."""
        return self.gate.bans

    def set_kick(self, kick):
        self.gate.kick = kick

    def reloading(self, old, new):
        """SIGHUP's part (``mqttd.reload``): ``new``'s ``[auth]`` and ``[flapping_detect]``
        made ready for the gate; the answer puts them in force."""
        return self.gate.reloading(new.auth, new.flapping_detect)

    def startService(self):
        super().startService()
        if self.cluster is not None:
            self.cluster.start()
        d = self.store.start()
        d.addCallback(lambda _: self._sync.start())  # never fails: a bad poll is retried
        d.addCallbacks(self._first_load_done, self._not_opened)

    def _not_opened(self, failure):
        if self.running:
            log.failure("the gate could not open the accounts database; stopping mqttd",
                        failure)
            self._reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
            self._reactor.stop()

    def _first_load_done(self, _):
        if not self.running:
            return
        self._loaded = True
        waiting, self._waiting = self._waiting, []
        for d, question in waiting:
            self.gate.authenticate(*question).chainDeferred(d)

    def authenticate(self, client_id, username, password, peer=None):
        """``Gate.authenticate``, once the bans are loaded."""
        if self._loaded:
            return self.gate.authenticate(client_id, username, password, peer)
        d = Deferred()
        self._waiting.append((d, (client_id, username, password, peer)))
        return d

    def stopService(self):
        super().stopService()
        d = self._sync.stop()
        if self.cluster is not None:
            d.addBoth(lambda _: self.cluster.stop())
        d.addBoth(lambda _: self.store.close())
        return d
