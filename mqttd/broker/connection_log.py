"""The lines a connection logs: refused, auth refused, connect, disconnect, store failed.

The per-connection lines go through the broker's per-address rate limit
(``Broker.connection_log``, a LogRateLimit), so a connection storm from one address
cannot flood the journal; a store failure is logged always (it is rare and it costs
the client its connection). Kept in one place so the fields an operator greps for
(client id, peer, credentials, reason, detail) read the same in every line. The
credentials are named as the gate names them (``who_of``): "user NAME" for an
``auth.users`` name, "anonymous", else "token PREFIX", since a device's token is its
username: never whole, however long.
"""
from twisted.logger import Logger

from mqttd.store.gate_records import who_of
from mqttd.store.sink import StoreRejected

__all__ = ["peer", "refused", "auth_refused", "connected", "disconnected", "store_failed"]

# The namespace the lines had when the connection logged them itself: operators filter
# the journal by it.
log = Logger(namespace="mqttd.broker.protocol")


def peer(transport):
    """``host:port`` of the client, or the address as text if it has no host."""
    addr = transport.getPeer()
    host = getattr(addr, "host", None)
    if host is None:
        return str(addr)
    return f"{host}:{addr.port}"


def _may_log(limit, transport):
    addr = transport.getPeer()
    return limit.allow(getattr(addr, "host", None) or str(addr))


def refused(limit, transport, reason):
    """A socket closed before its CONNECT was read (max_connections)."""
    if _may_log(limit, transport):
        log.info("refused {peer}: {reason}", peer=peer(transport), reason=reason)


def auth_refused(limit, transport, client_id, username, code, static_users):
    """``static_users``: the ``auth.users`` names (any other username is a token)."""
    if _may_log(limit, transport):
        log.info("auth {client_id} {peer} ({who}): refused {code}",
                 client_id=client_id, peer=peer(transport),
                 who=who_of(username, static_users), code=code)


def connected(limit, transport, client_id, connect, present, static_users):
    if _may_log(limit, transport):
        log.info("connect {client_id} {peer} ({who}) clean={clean} "
                 "keepalive={keepalive} present={present}",
                 client_id=client_id, peer=peer(transport),
                 who=who_of(connect.username, static_users),
                 clean=connect.clean_session, keepalive=connect.keepalive, present=present)


def disconnected(limit, transport, client_id, reason, detail):
    """``detail`` says which rule a protocol error broke, or why the store failed."""
    if _may_log(limit, transport):
        log.info("disconnect {client_id} {peer}: {reason}" if detail is None else
                 "disconnect {client_id} {peer}: {reason}: {detail}",
                 client_id=client_id, peer=peer(transport), reason=reason, detail=detail)


def store_failed(client_id, failure):
    """Log why the sink did not take a message of ``client_id``; return the reason of
    an expected refusal (StoreRejected: commit too slow, refused, overload), or None
    for anything else (logged with its traceback)."""
    if failure.check(StoreRejected):
        reason = failure.value.reason
        log.warn("store failed for {client_id}: {reason}; closing without ack",
                 client_id=client_id, reason=reason)
        return reason
    log.failure("store failed for {client_id}: closing without ack", failure,
                client_id=client_id)
    return None
