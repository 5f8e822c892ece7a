"""Sets of IP networks (bans, the allowlist) that answer "is this peer in it?" cheaply.

``parse_network`` reads one config entry (an address or a CIDR, v4 or v6) with the
``ipaddress`` module, once, at construction or reload. ``NetworkSet`` then keeps, per
IP version and prefix length, a set of network numbers: a lookup parses the peer with
``inet_pton`` and does one set lookup per distinct prefix length, however many entries
there are (a ban list of 10,000 addresses is one length). An IPv4-mapped IPv6 peer
(``::ffff:10.0.0.1``, from a dual-stack listener) is matched as the IPv4 address it is,
and so is such an entry.
"""
import ipaddress
from socket import AF_INET, AF_INET6, inet_pton

__all__ = ["NetworkSet", "address_key", "parse_network", "peer_number"]


def parse_network(text):
    """The ``ipaddress`` network of ``text`` (an address is its /32 or /128); ValueError
    with the reason if it is neither, or has bits set past its prefix (``10.1.2.3/8``)."""
    if not isinstance(text, str):
        raise ValueError(f"not a string: {text!r}")
    network = ipaddress.ip_network(text, strict=True)
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def address_key(host):
    """``host`` as the door keys it: an IPv4-mapped IPv6 address as its IPv4 form, so
    one client counts once whichever listener it came through."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def peer_number(host):
    """(version, integer) of a peer address string, or None if it is not one (parsed
    once per connection and matched against every set)."""
    try:
        if ":" in host:
            value = int.from_bytes(inet_pton(AF_INET6, host.partition("%")[0]), "big")
            if value >> 32 == 0xFFFF:
                return 4, value & 0xFFFFFFFF
            return 6, value
        return 4, int.from_bytes(inet_pton(AF_INET, host), "big")
    except (OSError, ValueError):
        return None


class NetworkSet:
    """Networks to match peer addresses against; empty is falsy and matches nothing."""

    __slots__ = ("_by_version", "_size")

    def __init__(self, networks=()):
        networks = list(networks)
        shifts = {4: {}, 6: {}}  # version -> {bits to shift off: {network numbers}}
        for network in networks:
            bits = network.max_prefixlen - network.prefixlen
            shifts[network.version].setdefault(bits, set()).add(
                int(network.network_address) >> bits)
        self._by_version = {
            version: tuple((bits, frozenset(numbers)) for bits, numbers in sorted(table.items()))
            for version, table in shifts.items()}
        self._size = len(networks)

    def __bool__(self):
        return self._size > 0

    def __contains__(self, number):
        """Whether ``number`` (``peer_number`` of a peer; None matches nothing) is in
        one of the networks."""
        if number is None:
            return False
        version, value = number
        for bits, numbers in self._by_version[version]:
            if value >> bits in numbers:
                return True
        return False
