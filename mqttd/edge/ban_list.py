"""The bans in force: client ids, usernames, IP addresses and networks, in memory.

The gate asks at every CONNECT (``match``) and the door at every accept (``ip_banned``),
so both are dictionary or set lookups, never a scan and never a database read. The list
is the store's ``bans`` table (``replace``, at start and after every change) plus the
bans made here and now (``add``: the flapping detector's), which count at once, before
the store has them. A ban lifts by the clock exactly at its ``until``
(``BanRecord.active``), whether or not anything swept it yet.

A live ban whose store write is still in flight must survive a reload that read the
table before the write: ``loading()`` marks when a reload started, ``confirmed(record)``
when the write landed, and ``replace`` keeps the live bans not confirmed before its
reload began (those are in the table it read, or an operator removed them since).

A username ban also matches a token by its hash (``token_hash``): a ban of a device
token names the SHA-256 the tokens table keys it by, never the token itself.

Memory: the table's bans as they are (an operator's list), and at most ``max_live`` made
here beyond them (``add`` answers False past it, after dropping the expired).
"""
import ipaddress

from mqttd.edge.networks import NetworkSet, address_key, parse_network, peer_number
from mqttd.store.gate_records import token_hash

__all__ = ["BanList", "MAX_LIVE_BANS"]

MAX_LIVE_BANS = 100_000


class BanList:
    """The bans in force; ``metrics.edge_bans_active`` follows their number (expired ones
    leave it at the next ``prune``, which the gate's poller calls every tick)."""

    def __init__(self, clock, metrics, max_live=MAX_LIVE_BANS):
        self._clock = clock
        self._metrics = metrics
        self._max_live = max_live
        self._names = {"clientid": {}, "username": {}}  # kind -> {value: BanRecord}
        self._addresses = {}  # peer_number of a single address -> BanRecord
        self._networks = {}  # ipaddress network (not a single address) -> BanRecord
        self._network_set = NetworkSet()
        self._live = {}  # (kind, value) -> [BanRecord, load mark when confirmed or None]
        self._loads = 0

    # -- what is in force ----------------------------------------------------------------

    def match(self, client_id, username, host):
        """The ban in force on this client id, username (or its token hash) or peer
        address (a string, or None), or None."""
        now = self._clock.seconds()
        record = self._named("clientid", client_id, now)
        if record is None and username is not None and self._names["username"]:
            record = (self._named("username", username, now)
                      or self._named("username", token_hash(username), now))
        if record is None and host:
            record = self._address(host, now)
        return record

    def ip_banned(self, host):
        """Whether the peer address ``host`` is banned (the door's question at accept)."""
        return bool(host) and self._address(host, self._clock.seconds()) is not None

    def active(self):
        """Every ban in force now."""
        now = self._clock.seconds()
        return [record for record in self._records() if record.active(now)]

    def __len__(self):
        """Bans held (some may have lifted since the last ``prune``)."""
        return (len(self._names["clientid"]) + len(self._names["username"])
                + len(self._addresses) + len(self._networks))

    # -- changes -------------------------------------------------------------------------

    def add(self, record):
        """Put ``record`` in force now (it replaces a ban of the same kind and value).
        False if it is already over: or past ``max_live`` live bans, after a prune."""
        if not record.active(self._clock.seconds()):
            return False
        key = (record.kind, record.value)
        if key not in self._live and len(self._live) >= self._max_live:
            self.prune()
            if len(self._live) >= self._max_live:
                return False
        self._live[key] = [record, None]
        self._put(record)
        self._count()
        return True

    def confirmed(self, record):
        """The store has ``record`` now (its write succeeded)."""
        entry = self._live.get((record.kind, record.value))
        if entry is not None and entry[0] == record:
            entry[1] = self._loads

    def loading(self):
        """A reload starts reading the store's bans: its mark, for ``replace``."""
        self._loads += 1
        return self._loads

    def replace(self, records, mark):
        """The bans are ``records`` (the store's, read after ``loading()`` gave ``mark``)
        plus the live ones the store may not have had then."""
        self._names = {"clientid": {}, "username": {}}
        self._addresses, self._networks = {}, {}
        for key, (record, confirmed) in list(self._live.items()):
            if confirmed is not None and confirmed < mark:
                del self._live[key]
        now = self._clock.seconds()
        for record in list(records) + [record for record, _ in self._live.values()]:
            if record.active(now):
                self._put(record, rebuild=False)
        self._network_set = NetworkSet(self._networks)
        self._count()

    def prune(self):
        """Drop the bans that are over; keep the gauge true."""
        now = self._clock.seconds()
        for key, (record, _) in list(self._live.items()):
            if not record.active(now):
                del self._live[key]
        for table in self._names.values():
            for value, record in list(table.items()):
                if not record.active(now):
                    del table[value]
        for number, record in list(self._addresses.items()):
            if not record.active(now):
                del self._addresses[number]
        expired = [network for network, record in self._networks.items()
                   if not record.active(now)]
        for network in expired:
            del self._networks[network]
        if expired:
            self._network_set = NetworkSet(self._networks)
        self._count()

    # -- inside ----------------------------------------------------------------------------

    def _records(self):
        for table in self._names.values():
            yield from table.values()
        yield from self._addresses.values()
        yield from self._networks.values()

    def _count(self):
        self._metrics.edge_bans_active = len(self)

    def _put(self, record, rebuild=True):
        if record.kind != "ip":
            self._names[record.kind][record.value] = record
            return
        try:
            network = parse_network(address_key(record.value))
        except ValueError:
            return  # not an address: the CLI checks; a bad row never bans everyone
        if network.prefixlen == network.max_prefixlen:
            self._addresses[peer_number(str(network.network_address))] = record
            return
        self._networks[network] = record
        if rebuild:
            self._network_set = NetworkSet(self._networks)

    def _named(self, kind, value, now):
        record = self._names[kind].get(value)
        return record if record is not None and record.active(now) else None

    def _address(self, host, now):
        number = peer_number(address_key(host))
        if number is None:
            return None
        record = self._addresses.get(number)
        if record is not None and record.active(now):
            return record
        if number not in self._network_set:
            return None
        version, value = number
        address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
        for network, record in self._networks.items():
            if address in network and record.active(now):
                return record
        return None
