"""Listeners that fail start-up with one line naming their config key.

twistd prints a page of traceback for a port that cannot be bound; an operator needs
to know which key (``server.listen[0]``, ``ingest.listen``) and why (in use, no
permission, no such directory). 1883 is already taken by Debian's own mosquitto
on many machines, so this is the start-up error operators meet first.

MQTT listeners also get an accept queue sized for reconnect storms (``with_backlog``).
"""
import ipaddress

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError

from mqttd.errors import ConfigError

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


def server_endpoint(reactor, key, description):
    """The server endpoint ``description`` names; ConfigError naming ``key`` if none."""
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError, OSError) as e:
        # OSError: ssl: reads its key and certificate files while parsing.
        raise ConfigError(f"{key}: bad endpoint {description!r}: {e}") from None
    except Exception as e:  # e.g. OpenSSL.crypto.Error: a file that is not a PEM key
        raise ConfigError(f"{key}: bad endpoint {description!r}: "
                          f"{type(e).__module__}.{type(e).__qualname__}: {e}") from None


def loopback_refusal(address, why, allow_key):
    """Why a loopback-only listener must not be bound to ``address``, or None (loopback,
    a unix socket, whose file's permissions decide who connects). ``why`` says what it
    would expose; ``allow_key`` is the config key that allows it anyway."""
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None
    host = address.host.split("%")[0]  # an IPv6 scope id
    if ipaddress.ip_address(host).is_loopback:
        return None
    return (f"listens on {host}, not on a loopback address; {why}: use "
            f"interface=127.0.0.1, or set {allow_key} = true to face the network")


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

    def on_bound(self, callback):
        """Call ``callback(port)`` once bound (``port`` None if refused); it returns the port."""
        self._waitingForPort.addCallback(callback)

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
