"""Listeners that fail start-up with one line naming their config key.

twistd prints a page of traceback for a port that cannot be bound; an operator needs
to know which key (``server.listen[0]``, ``ingest.listen``) and why (in use, no
permission, no such directory). 1883 is already taken by Debian's own mosquitto
on many machines, so this is the start-up error operators meet first.

MQTT listeners also get an accept queue sized for reconnect storms (``with_backlog``).
"""
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.error import CannotListenError

LISTEN_BACKLOG = 1024
"""The accept queue of an MQTT listener unless its endpoint string sets ``backlog=``.
Twisted's default, 50, overflowed in a reconnect burst of 3,000 clients
(``ListenOverflows``), and the clients' SYNs were retried for seconds. The kernel caps
it at ``net.core.somaxconn`` (4096 since Linux 5.4)."""

_BACKLOG_KINDS = ("tcp", "tcp6", "ssl", "unix")  # endpoint types that take a backlog


def with_backlog(description, backlog=LISTEN_BACKLOG):
    """``description`` (an endpoint string) with ``backlog=`` added if its type takes one
    and it sets none; anything else (``systemd:``, a plugin's type) as it is."""
    fields = endpoint_fields(description)
    if fields[0].lower() not in _BACKLOG_KINDS:
        return description
    if any(field.partition("=")[0] == "backlog" for field in fields[1:]):
        return description
    return f"{description}:backlog={backlog}"


def endpoint_fields(description):
    """The ``:``-separated fields of an endpoint string, escapes (``\\:``) respected,
    as ``serverFromString`` splits them."""
    fields, field, escaped = [], [], False
    for char in description:
        if escaped:
            field.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(field))
            field = []
        else:
            field.append(char)
    fields.append("".join(field))
    return fields


class KeyedListener(StreamServerEndpointService):
    """Binds in ``privilegedStartService`` and raises at once if it cannot.

    ``refuse(address)``, if given, judges the address actually bound (the only exact
    answer for every endpoint type: ``tcp:0`` binds all interfaces, a systemd socket
    says nothing in its description): a reason string closes the port and stops
    start-up with that reason; None keeps it.
    """

    _raiseSynchronously = True

    def __init__(self, endpoint, factory, key, description, refuse=None):
        super().__init__(endpoint, factory)
        self.key = key
        self.description = description
        self._refuse = refuse
        self._refusal = None
        self._closing = None  # a refused port's close

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            error = e.socketError
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise SystemExit(
                f"mqttd: {self.key}: cannot listen on {self.description}: {reason}") from None
        except OSError as e:  # a unix socket: no such directory, no permission
            raise SystemExit(
                f"mqttd: {self.key}: cannot listen on {self.description}: "
                f"{e.strerror or e}") from None
        if self._refuse is not None:
            self._waitingForPort.addCallback(self._judge)
            if self._refusal is not None:  # every endpoint here binds synchronously
                raise SystemExit(f"mqttd: configuration error: {self.key}: {self._refusal}")

    def _judge(self, port):
        self._refusal = self._refuse(port.getHost())
        if self._refusal is None:
            return port
        # Not returned into the chain: stopService cancels that Deferred, which would
        # cancel the close itself (tcp's is a deferLater).
        self._closing = port.stopListening()
        return None  # stopService finds no port

    def stopService(self):
        d = super().stopService()
        closing, self._closing = self._closing, None
        if closing is not None:
            d.addCallback(lambda _: closing)
        return d
