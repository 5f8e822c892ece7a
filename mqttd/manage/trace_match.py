"""Which connections the trace follows publish by publish: the rules in force, matched.

EMQX's trace, in mqttd's terms: off for everyone by default; on for a client id, a
username or an IP address (or network) while a rule of ``trace_rules`` says so. The
rules come from SQLite (``mqttd.manage.trace_sync``) and, in the tree, to each worker
over its channel as one message (``to_payload`` / ``from_payload``).

A match is decided when a connection is identified (its CONNECT accepted) and again for
every live connection when the rules change, never per publish: a publish of an
untraced client costs an attribute test (``ClientTrace.verbose``).

``username`` names a static user (``auth.users``) by its name and a token user by its
token prefix (what ``mqttd tokens list`` and every log line show): a rule never holds
a token.
"""
import ipaddress

import attrs

__all__ = ["TraceMatcher", "from_payload", "to_payload"]


@attrs.frozen(slots=True)
class _Rules:
    client_ids: frozenset = frozenset()
    usernames: frozenset = frozenset()
    addresses: frozenset = frozenset()
    networks: tuple = ()


class TraceMatcher:
    """The rules in force: ``(kind, value)`` pairs, kinds as ``mqttd.store.trace_rules``."""

    def __init__(self, rules=()):
        self.replace(rules)

    def replace(self, rules):
        """Put ``rules`` ((kind, value) pairs) in force; True if that changed them.
        A malformed IP rule is skipped (the store only holds good ones)."""
        rules = frozenset((kind, value) for kind, value in rules)
        if getattr(self, "rules", None) == rules:
            return False
        client_ids, usernames, addresses, networks = set(), set(), set(), []
        for kind, value in rules:
            if kind == "client_id":
                client_ids.add(value)
            elif kind == "username":
                usernames.add(value)
            elif kind == "ip":
                try:
                    network = ipaddress.ip_network(value, strict=False)
                except ValueError:
                    continue
                if "/" in value:
                    networks.append(network)
                else:
                    addresses.add(str(network.network_address))
        self.rules = rules
        self._rules = _Rules(frozenset(client_ids), frozenset(usernames),
                             frozenset(addresses), tuple(networks))
        return True

    def __len__(self):
        return len(self.rules)

    def matches(self, client_id, username, host):
        """Whether a client of ``client_id``, ``username`` (the name a rule may give: a
        static user's, or a token's prefix) and peer ``host`` (an IP, or None) is traced."""
        rules = self._rules
        if client_id is not None and client_id in rules.client_ids:
            return True
        if username is not None and username in rules.usernames:
            return True
        if host and (rules.addresses or rules.networks):
            if host in rules.addresses:
                return True
            if rules.networks:
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    return False
                return any(address.version == network.version and address in network
                           for network in rules.networks)
        return False


def to_payload(rules):
    """The channel message's body for the rules in force."""
    return {"rules": sorted([kind, value] for kind, value in rules)}


def from_payload(payload):
    """The (kind, value) pairs a ``to_payload`` body carries; malformed entries skipped."""
    rules = payload.get("rules") if isinstance(payload, dict) else None
    if not isinstance(rules, list):
        return []
    return [(entry[0], entry[1]) for entry in rules
            if isinstance(entry, list) and len(entry) == 2
            and all(isinstance(part, str) for part in entry)]
