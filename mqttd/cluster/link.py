"""One connection to Redis, kept up for the node's life: what the cluster's state talks to.

The gate must never wait on Redis longer than ``timeout`` and never block the reactor,
so every call answers a Deferred that fails at once with ``RedisDown`` while there is
no usable connection, and within ``timeout`` when Redis stops answering (txredisapi's
reply timeout drops the connection then). Each caller has a local answer for that
failure (``mqttd.cluster`` falls back to this node's own state).

Reconnecting is Twisted's ``ClientService`` with a backoff from ``reconnect_initial``
to ``reconnect_max`` seconds (with jitter), on the clock and endpoint given, so the
tests drive it on a Clock. The protocol is txredisapi's, built here with this reactor
(its module-level connection helpers use the global reactor and pool their own
reconnects). Numbers are not converted: a client id "123" stays a string.

Every change of state is loud: one log line when the link goes down (what falls back
while it is), one when it is back (after how long), ``cluster_redis_up`` 1 or 0, and
``cluster_redis_connects`` / ``cluster_redis_lost`` counted. ``on_up`` callbacks run
each time a connection becomes usable, before any other command is sent on it: that
is where the node writes its state again (``mqttd.cluster.node``).
"""
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
import txredisapi

__all__ = ["RedisDown", "RedisLink", "UNREACHABLE"]

log = Logger()


class RedisDown(Exception):
    """No usable connection to Redis now (the call was not sent)."""


UNREACHABLE = (RedisDown, txredisapi.ConnectionError)
"""What a call fails with when Redis could not be asked or did not answer in time (a
txredisapi TimeoutError is one of its ConnectionErrors): the outage, said by the link."""


class _Factory(Factory):
    """Builds txredisapi's protocol; the attributes txredisapi asks its factory for on a
    failed AUTH or SELECT (``stopTrying``, ``connectionError``, ``isLazy``) are here."""

    isLazy = False
    noisy = False

    def __init__(self, link):
        self._link = link

    def buildProtocol(self, addr):
        return self._link.build_protocol()

    def stopTrying(self):
        """txredisapi gives up on a refused login; the link keeps trying with backoff
        (the operator may fix Redis' password without restarting mqttd)."""

    def connectionError(self, why):
        self._link.refused(why)


class RedisLink:
    """``address`` is a ``mqttd.urls.RedisAddress``; ``endpoint`` (tests) replaces the
    TCP endpoint to it. ``start()`` begins connecting, ``stop()`` closes (a Deferred)."""

    def __init__(self, reactor, address, metrics, timeout, connect_timeout,
                 reconnect_initial, reconnect_max, endpoint=None):
        self._reactor = reactor
        self._address = address
        self._metrics = metrics
        self._timeout = timeout
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, address.host, address.port,
                                        timeout=connect_timeout)
        self._factory = _Factory(self)
        self._backoff = backoffPolicy(reconnect_initial, reconnect_max, factor=2.0)
        self._service = ClientService(endpoint, self._factory, retryPolicy=self._retry,
                                      clock=reactor)
        self._protocol = None  # the usable connection, or None
        self._on_up = []
        self._down_since = None  # when the link went down (None: up, or never up yet)
        self._started_at = None
        self._said_down = False
        self._stopping = False
        metrics.cluster_redis_up = 0

    @property
    def up(self):
        return self._protocol is not None

    def on_up(self, callback):
        """``callback()`` each time a connection becomes usable (first thing sent on it)."""
        self._on_up.append(callback)

    def start(self):
        self._started_at = self._reactor.seconds()
        self._service.startService()

    def stop(self):
        self._stopping = True
        self._protocol = None
        self._metrics.cluster_redis_up = 0
        return self._service.stopService()

    # -- calls -------------------------------------------------------------------------

    def call(self, *command):
        """Deferred of Redis' answer to ``command`` (a ResponseError fails it)."""
        protocol = self._protocol
        if protocol is None:
            return fail(RedisDown(f"no connection to {self._address}"))
        try:
            return protocol.execute_command(*command)
        except Exception as e:  # not connected after all, or a value it cannot encode
            return fail(e)

    def script(self, script, keys, args):
        """Deferred of the answer of ``script`` (a ``mqttd.cluster.scripts.Script``) run
        on ``keys`` and ``args`` (EVALSHA; EVAL when Redis does not have it yet)."""
        protocol = self._protocol
        if protocol is None:
            return fail(RedisDown(f"no connection to {self._address}"))
        try:
            return protocol.eval(script.source, list(keys), list(args))
        except Exception as e:
            return fail(e)

    # -- the connection ----------------------------------------------------------------

    def build_protocol(self):
        address = self._address
        protocol = txredisapi.BaseRedisProtocol(
            charset="utf-8", replyTimeout=self._timeout, password=address.password,
            dbid=address.db or None, convertNumbers=False, username=address.username)
        protocol.callLater = self._reactor.callLater  # its reply timeouts, on our clock
        protocol.factory = self._factory
        protocol.whenConnected().addCallback(self._usable)
        protocol.whenDisconnected().addCallback(self._lost)
        return protocol

    def _retry(self, attempt):
        """The backoff before attempt ``attempt`` + 1; the first failure of an outage
        that began before any connection (Redis down at start) is said once."""
        if self._down_since is None and self._protocol is None and not self._said_down:
            self._said_down = True
            log.error("cluster: cannot reach Redis at {address}; the gate decides quotas, "
                      "flapping and bans from this node's state alone until it can "
                      "(retrying with backoff)", address=str(self._address))
        return self._backoff(attempt)

    def refused(self, why):
        """Redis refused the login or the database (txredisapi's message)."""
        log.error("cluster: Redis at {address} refused this node: {why} (retried with "
                  "backoff; the gate decides from this node's state meanwhile)",
                  address=str(self._address), why=why)

    def _usable(self, protocol):
        if self._stopping:
            protocol.transport.loseConnection()
            return
        self._protocol = protocol
        self._metrics.cluster_redis_up = 1
        self._metrics.cluster_redis_connects += 1
        now = self._reactor.seconds()
        if self._down_since is None:
            log.info("cluster: connected to Redis at {address} ({seconds:.1f} s after start)",
                     address=str(self._address), seconds=now - self._started_at)
        else:
            log.warn("cluster: Redis at {address} is back after {seconds:.1f} s down; "
                     "shared quotas, flapping and bans resume", address=str(self._address),
                     seconds=now - self._down_since)
        self._down_since = None
        self._said_down = False
        for callback in list(self._on_up):
            try:
                callback()
            except Exception:
                log.failure("cluster: a step after connecting to Redis failed")

    def _lost(self, protocol):
        if self._protocol is not protocol:
            return  # never usable (a refused login), or an older one
        self._protocol = None
        self._metrics.cluster_redis_up = 0
        self._metrics.cluster_redis_lost += 1
        if self._stopping:
            return
        self._down_since = self._reactor.seconds()
        self._said_down = True
        log.error("cluster: lost Redis at {address}; until it is back this node decides "
                  "quotas, flapping and bans from its own state alone (reconnecting with "
                  "backoff)", address=str(self._address))
