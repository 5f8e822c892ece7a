"""The connected clients of one broker, as the manhole's ``clients()`` lists them.

Only the process that holds a connection knows its session (subscriptions, messages in
flight and queued), so each broker answers for its own: a worker when the master asks
it (``mqttd.manage.questions``), the single process directly. Filters are applied here,
so what crosses the channel is only what was asked for, and the answer is bounded twice:
at most ``limit`` entries, and at most ``max_bytes`` of them as JSON (a page of long
client ids cannot make an answer past the channel's frame). ``matched`` still counts
every connection that matched, so the operator knows how many were left out.

A token user's username is the token itself: it is shown as ``token <prefix>``, as the
gate's log lines show it, never whole.
"""
import fnmatch
import ipaddress
import json

from mqttd.edge.networks import address_key
from mqttd.store.gate_records import who_of

__all__ = ["ClientFilter", "MAX_ANSWER_BYTES", "MAX_CLIENTS", "describe_clients"]

MAX_CLIENTS = 1000
"""The most entries one ``clients()`` call shows (its ``limit`` is capped to this)."""

MAX_ANSWER_BYTES = 1024 * 1024
"""The most bytes of JSON entries one broker answers with (the channel takes 4 MiB)."""


class ClientFilter:
    """Which connections to list: ``ip`` (an address, or a network such as
    ``10.0.0.0/8``), ``account`` (exact) and ``client_id`` (exact, or a glob with ``*``
    and ``?``); None matches everything. ValueError for a value that cannot match."""

    def __init__(self, ip=None, account=None, client_id=None):
        self._network = None
        if ip is not None:
            try:
                self._network = ipaddress.ip_network(address_key(str(ip)), strict=False)
            except ValueError:
                raise ValueError(f"ip: not an IP address or network: {ip!r}") from None
        for name, value in (("account", account), ("client_id", client_id)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: must be a string, got {value!r}")
        self._account = account
        self._client_id = client_id
        self._glob = client_id is not None and any(c in client_id for c in "*?[")

    def as_args(self):
        """The filter as the JSON arguments of a question to a worker."""
        return {"ip": None if self._network is None else str(self._network),
                "account": self._account, "client_id": self._client_id}

    def matches(self, client_id, account, host):
        if self._account is not None and account != self._account:
            return False
        if self._client_id is not None:
            if self._glob:
                if not fnmatch.fnmatchcase(client_id, self._client_id):
                    return False
            elif client_id != self._client_id:
                return False
        if self._network is not None:
            try:
                if ipaddress.ip_address(address_key(host or "")) not in self._network:
                    return False
            except ValueError:  # a unix-socket client has no address
                return False
        return True


def _shown_username(username, static_users):
    """A static user's name, None (anonymous), else ``who_of``'s "token PREFIX"."""
    if username is None or username in static_users:
        return username
    return who_of(username, static_users)


def _peer(transport):
    address = transport.getPeer()
    host = getattr(address, "host", None)
    if host is None:
        return None, str(address)
    return host, f"{host}:{address.port}"


def describe_clients(broker, process, wanted, limit, static_users=frozenset(),
                     max_bytes=MAX_ANSWER_BYTES):
    """``{"clients": [entry, ...] (by client id), "matched": N}`` of ``broker``'s live
    connections that ``wanted`` (a ClientFilter) matches, at most ``limit`` of them and
    ``max_bytes`` of JSON. ``process`` names this broker in each entry."""
    found = []
    for session in list(broker.sessions.values()):
        protocol = session.protocol
        if protocol is None or protocol.transport is None:
            continue
        client_id, account = protocol.client_id, protocol.account
        host, peer = _peer(protocol.transport)
        if wanted.matches(client_id, account, host):
            found.append((client_id, account or "", session, protocol, peer))
    found.sort(key=lambda item: (item[0], item[1]))
    clients, size = [], 0
    for client_id, account, session, protocol, peer in found[:limit]:
        entry = {
            "client_id": client_id, "account": account or None,
            "username": _shown_username(protocol.username, static_users),
            "peer": peer, "process": process, "clean": session.clean,
            "subscriptions": len(session.subscriptions or ()),
            "inflight": len(session.inflight or ()), "queued": len(session.queue or ()),
        }
        size += len(json.dumps(entry)) + 2
        if size > max_bytes:
            break
        clients.append(entry)
    return {"clients": clients, "matched": len(found)}
