"""The door: whether a new socket may stay, decided at accept from its peer address alone.

It is the cheapest place to refuse: no protocol object, no timer, no byte read. The
checks, in order (the first that says no is the ``Refusal``):

1. ``limits.banned``: addresses and networks (v4, v6) never let in; then the gate's
   bans of addresses and networks (the ``bans`` table, flapping bans: ``bans``, a
   ``BanList``, whose ``ip_banned(host)`` says), refused as "banned";
2. ``broker.max_connections``: connections open at once, every address together;
3. ``limits.allowlist``: addresses and networks exempt from the two per-address limits
   below (a NATed fleet, a proxy in front), not from the ones above;
4. ``limits.max_conn_per_ip``: connections open at once from one address;
5. ``limits.max_conn_rate_per_ip``: new connections a second from one address, a token
   bucket with ``limits.conn_rate_burst`` (``mqttd.edge.bucket``).

A unix-socket peer (no address) meets only the global cap. Admitted means counted: the
caller calls ``release(host)`` once when that connection closes (with the ``listener``
it was admitted on, ``server.listen[i]``, which is counted apart:
``edge_connections_open_by_listener``). Each refusal is counted
in ``metrics.edge_refused`` under the key that refused it, and logged through the
per-address ``LogRateLimit`` it is given, so a flood cannot flood the journal.

Memory is bounded. The door keeps state for an address while it has connections open
(at most ``broker.max_connections`` of them) or its bucket is refilling, and drops it
when both are over; addresses with nothing open wait in ``_idle``, oldest first, dropped
as their buckets fill up and in any case past ``max_idle_addresses`` (the oldest first:
it then comes back with a full bucket, which only a scan from that many addresses
earns). An address costs about 300 bytes (its key, a dict slot, its count and bucket):
the idle ones take 20 MB at most by default, and they are only the addresses seen in
the last ``conn_rate_burst / max_conn_rate_per_ip`` seconds.
"""
from collections import OrderedDict

import attrs
from twisted.logger import Logger

from mqttd.edge.bucket import TokenBuckets
from mqttd.edge.networks import NetworkSet, address_key, parse_network, peer_number

__all__ = ["Door", "Refusal", "MAX_IDLE_ADDRESSES"]

log = Logger()

MAX_IDLE_ADDRESSES = 65536
"""Addresses with no connection open whose connect-rate state is kept (see the module)."""

BANNED = "limits.banned"
BANS = "banned"
MAX_CONNECTIONS = "broker.max_connections"
MAX_CONN_PER_IP = "limits.max_conn_per_ip"
MAX_CONN_RATE_PER_IP = "limits.max_conn_rate_per_ip"


@attrs.frozen
class Refusal:
    """Why the door closed a socket: ``limit``, the config key that refused it (also the
    label of ``edge_refused``), and a short ``reason`` for the log."""

    limit: str
    reason: str


class _Address:
    """What the door knows of one address: its connections open, and its bucket (None
    until the connect rate applies to it: allowlisted, or with the rate off)."""

    __slots__ = ("open", "bucket")

    def __init__(self):
        self.open = 0
        self.bucket = None


def _networks(limits, key):
    """The NetworkSet of ``limits.<key>``; ValueError naming the entry that is not one."""
    networks = []
    for index, entry in enumerate(getattr(limits, key)):
        try:
            networks.append(parse_network(entry))
        except ValueError as e:
            raise ValueError(f"limits.{key}[{index}]: {e}") from None
    return NetworkSet(networks)


class Door:
    """The accept-time limits of one process's listeners.

    ``clock`` is an IReactorTime; ``limits`` the ``[limits]`` section (duck-typed:
    ``max_conn_per_ip``, ``max_conn_rate_per_ip``, ``conn_rate_burst``, ``allowlist``,
    ``banned``); ``max_connections`` the global cap (``broker.max_connections``);
    ``metrics`` the process's Metrics; ``log_rate`` a ``LogRateLimit`` (the broker's own
    ``connection_log`` in one process, so the door and the broker share a budget of
    lines per address; the master's own in the tree);
    ``bans`` the gate's ``BanList`` (anything with ``ip_banned(host)``), or None.
    """

    def __init__(self, clock, limits, max_connections, metrics, log_rate,
                 max_idle_addresses=MAX_IDLE_ADDRESSES, bans=None):
        self._clock = clock
        self._bans = bans
        self._metrics = metrics
        self._log_rate = log_rate
        self._max_idle = max_idle_addresses
        self._addresses = {}  # address key -> _Address, with connections open or refilling
        self._idle = OrderedDict()  # the _Address-es with none open, oldest first
        self._open = 0
        self._max_connections = None
        self._watch = None  # watch(address key) of every peer at accept (``watch``)
        self.reload(limits, max_connections)

    def watch(self, seen):
        """Call ``seen(address key)`` for every socket with an address at accept, let in
        or not (``mqttd.manage.connect_rates``: who connects how often)."""
        self._watch = seen

    # -- configuration -----------------------------------------------------------------

    def reload(self, limits, max_connections=None):
        """Apply new limits (SIGHUP) to connections from now on. Counts are kept, and so
        are the buckets (capped to a lower burst at their next use); a bad entry raises
        ValueError before anything changed. ``max_connections`` None keeps the cap."""
        banned = _networks(limits, "banned")
        allowlist = _networks(limits, "allowlist")
        rate, burst = limits.max_conn_rate_per_ip, limits.conn_rate_burst
        buckets = TokenBuckets(self._clock, rate, burst) if rate > 0 else None
        if max_connections is None:
            max_connections = self._max_connections
        self._banned = banned
        self._allowlist = allowlist
        self._parse = bool(banned or allowlist)  # no sets: no need to parse the peer
        self._max_connections = max_connections
        self._max_per_ip = limits.max_conn_per_ip
        self._buckets = buckets
        self._refusals = {
            BANNED: Refusal(BANNED, "banned address"),
            BANS: Refusal(BANS, "banned address (bans)"),
            MAX_CONNECTIONS: Refusal(MAX_CONNECTIONS, f"{max_connections} connections open"),
            MAX_CONN_PER_IP: Refusal(
                MAX_CONN_PER_IP, f"{limits.max_conn_per_ip} connections open from it"),
            MAX_CONN_RATE_PER_IP: Refusal(
                MAX_CONN_RATE_PER_IP, f"over {rate:g} connects a second from it (burst {burst})"),
        }
        for key, entry in list(self._idle.items()):
            if self._refilled(entry):
                self._drop_idle(key)

    # -- the two calls -----------------------------------------------------------------

    def admit(self, host, listener=None):
        """None to let the socket from ``host`` (its peer IP; None or "" for a unix
        socket) in, counted until ``release(host, listener)``; else the ``Refusal``.
        ``listener``: the key of the listener that accepted it, if it is to be counted."""
        key = number = None
        if host:
            key = address_key(host)
            if self._watch is not None:
                self._watch(key)
            if self._parse:
                number = peer_number(key)
                if number in self._banned:
                    return self._refuse(BANNED, key)
            if self._bans is not None and self._bans.ip_banned(key):
                return self._refuse(BANS, key)
        if self._open >= self._max_connections:
            return self._refuse(MAX_CONNECTIONS, key)
        if key is not None:
            entry = self._addresses.get(key)
            if number is None or number not in self._allowlist:
                if entry is None:
                    entry = self._track(key)  # a new address: under every per-address limit
                elif 0 < self._max_per_ip <= entry.open:
                    return self._refuse(MAX_CONN_PER_IP, key)
                buckets = self._buckets
                if buckets is not None:
                    if entry.bucket is None:
                        entry.bucket = buckets.new()
                    if not buckets.take(entry.bucket):  # (never a new one's: burst >= 1)
                        if not entry.open:
                            self._idle.move_to_end(key)
                        return self._refuse(MAX_CONN_RATE_PER_IP, key)
            elif entry is None:
                entry = self._track(key)
            if not entry.open:
                self._idle.pop(key, None)
            entry.open += 1
        self._open += 1
        metrics = self._metrics
        metrics.edge_admitted += 1
        metrics.edge_connections_open += 1
        if listener is not None:
            metrics.edge_admitted_by_listener[listener] += 1
            metrics.edge_connections_open_by_listener[listener] += 1
        return None

    def release(self, host, listener=None):
        """The connection ``admit(host, listener)`` let in has closed (call once per
        admission)."""
        if host:
            key = address_key(host)
            entry = self._addresses.get(key)
            if entry is None or not entry.open:
                raise ValueError(f"release({host!r}) without a connection admitted from it")
            entry.open -= 1
            if not entry.open:
                if self._refilled(entry):
                    del self._addresses[key]
                    self._metrics.edge_addresses_tracked -= 1
                else:
                    self._idle[key] = entry
                    self._sweep()
        elif not self._open:
            raise ValueError("release() without a connection admitted")
        self._open -= 1
        self._metrics.edge_connections_open -= 1
        if listener is not None:
            self._metrics.edge_connections_open_by_listener[listener] -= 1

    # -- what the door holds -----------------------------------------------------------

    @property
    def open(self):
        """Connections admitted and not yet released."""
        return self._open

    def open_from(self, host):
        """Connections admitted from ``host`` and not yet released."""
        entry = self._addresses.get(address_key(host))
        return 0 if entry is None else entry.open

    def open_counts(self):
        """{address: connections open} of every address with one open now."""
        return {key: entry.open for key, entry in self._addresses.items() if entry.open}

    def __len__(self):
        """Addresses the door holds state for (see the module on how they are bounded)."""
        return len(self._addresses)

    # -- inside ------------------------------------------------------------------------

    def _refuse(self, limit, key):
        refusal = self._refusals[limit]
        self._metrics.edge_refused[limit] += 1
        peer = key or "unix socket"
        if self._log_rate.allow(peer):
            log.info("refused {peer} at accept: {reason} ({limit})", peer=peer,
                     reason=refusal.reason, limit=limit)
        return refusal

    def _track(self, key):
        entry = self._addresses[key] = _Address()
        self._metrics.edge_addresses_tracked += 1
        self._sweep()
        return entry

    def _refilled(self, entry):
        """Whether an address with nothing open would be as good as new if forgotten."""
        bucket = entry.bucket
        return bucket is None or self._buckets is None or self._buckets.is_full(bucket)

    def _sweep(self):
        """Forget the oldest idle addresses once refilled, and past ``max_idle_addresses``
        at any rate: one step per new entry keeps up with any growth."""
        idle = self._idle
        while idle:
            key = next(iter(idle))
            if len(idle) <= self._max_idle and not self._refilled(idle[key]):
                return
            self._drop_idle(key)

    def _drop_idle(self, key):
        del self._idle[key]
        del self._addresses[key]
        self._metrics.edge_addresses_tracked -= 1
