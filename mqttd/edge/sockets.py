"""Raw listening sockets for the master, bound from the same endpoint strings as twistd's.

The master accepts connections itself instead of through Twisted ports: a connection it
hands to a worker must never become a Twisted transport here, whose close would
``shutdown(2)`` the socket the worker now owns (DESIGN.md, "Known pitfalls"). So the
master parses ``tcp:``, ``tcp6:``, ``ssl:`` and ``unix:`` strings itself, with the
arguments those take in Twisted (``port``, ``interface``, ``backlog``; ``mode`` for unix),
and anything else is refused at start with the key that named it. An ``ssl:`` listener
binds as ``tcp:`` does; its certificate options (``TLS_OPTIONS``) are read by
``edge.tls_context``, and the master terminates TLS itself (``edge.tls_connect``).
"""
import os
import socket
import stat

from mqttd.errors import ConfigError
from mqttd.listeners import LISTEN_BACKLOG, endpoint_fields

_KINDS = ("tcp", "tcp6", "ssl", "unix")
TLS_OPTIONS = ("privateKey", "certKey", "extraCertChain", "dhParameters", "sslmethod")
"""The arguments of Twisted's ``ssl:`` endpoint beyond those of ``tcp:``."""


def _arguments(key, fields, positional):
    """Twisted's ``a:b:name=value`` syntax: positional then named arguments."""
    values = {}
    for index, field in enumerate(fields):
        name, equals, value = field.partition("=")
        if equals:
            values[name] = value
        elif index < len(positional):
            values[positional[index]] = field
        else:
            raise ConfigError(f"{key}: too many arguments in endpoint: {field!r}")
    return values


def _integer(key, name, text, low, high):
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{key}: {name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}: {name} must be {low}..{high}, got {value}")
    return value


def endpoint_arguments(key, description):
    """``(kind, {name: value})`` of an endpoint string the master listens on, or
    ConfigError naming ``key`` (a kind it does not take, an unknown argument)."""
    kind, *fields = endpoint_fields(description)
    kind = kind.lower()
    if kind not in _KINDS:
        raise ConfigError(
            f"{key}: the master accepts tcp:, tcp6:, ssl: and unix: listeners, "
            f"got {description!r}")
    if kind == "unix":
        args = _arguments(key, fields, ("address",))
        unknown = set(args) - {"address", "mode", "backlog", "lockfile", "wantPID"}
    else:
        args = _arguments(key, fields, ("port",))
        unknown = set(args) - {"port", "interface", "backlog"}
        if kind == "ssl":
            unknown -= set(TLS_OPTIONS)
    if unknown:
        raise ConfigError(f"{key}: unknown endpoint argument {sorted(unknown)[0]!r}")
    return kind, args


def bind_listener(key, description, backlog=LISTEN_BACKLOG):
    """A bound, listening, non-blocking socket for ``description``, or ConfigError
    (unknown type, bad argument) / SystemExit (cannot bind), naming ``key``."""
    kind, args = endpoint_arguments(key, description)
    backlog = _integer(key, "backlog", args.get("backlog", str(backlog)), 1, 1 << 20)
    try:
        if kind == "unix":
            return _bind_unix(key, args, backlog)
        return _bind_tcp(key, kind, args, backlog)
    except OSError as e:
        raise SystemExit(
            f"mqttd: {key}: cannot listen on {description}: {e.strerror or e}") from None


def _bind_tcp(key, kind, args, backlog):
    if "port" not in args:
        raise ConfigError(f"{key}: a tcp endpoint needs a port")
    port = _integer(key, "port", args["port"], 0, 65535)
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    interface = args.get("interface", "::" if family == socket.AF_INET6 else "")
    if ":" in interface:
        family = socket.AF_INET6  # Twisted's tcp: takes an IPv6 interface too
    def bind(sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))

    return _listening(socket.socket(family, socket.SOCK_STREAM), bind, backlog)


def _bind_unix(key, args, backlog):
    path = args.get("address")
    if not path:
        raise ConfigError(f"{key}: a unix endpoint needs a path")
    try:
        mode = int(args.get("mode", "666"), 8)
    except ValueError:
        raise ConfigError(f"{key}: mode must be octal, got {args['mode']!r}") from None
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a socket left by a crash; Twisted's unix: does the same
    except FileNotFoundError:
        pass
    def bind(sock):
        sock.bind(path)
        os.chmod(path, mode)

    return _listening(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), bind, backlog)


def _listening(sock, bind, backlog):
    """``sock`` after ``bind(sock)``, listening and non-blocking; closed if any of it
    fails (the error passes on)."""
    try:
        bind(sock)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
