"""``mqttd report``: the running appliance's incident report, for a terminal or a script.

It asks the appliance, it does not read the database: the report is what the master
holds in memory (who connects, who is refused, who flaps, how the webhook does), so it
is served at ``/report`` on ``manage.http_listen`` as JSON, and this prints it. HTTP
rather than the manhole: one request and one JSON document, no password to hold and no
terminal to emulate, and the same answer a monitoring script can fetch itself; the
manhole's ``report()`` prints the same text. The appliance answers from memory at once,
so the command's ``--timeout`` (5 s) is only for one that is not answering at all.

Exit status 0: printed; 1: the appliance could not be asked (one line on stderr).
"""
import http.client
import json
import socket
import urllib.error
import urllib.request

from mqttd.listeners import endpoint_fields
from mqttd.manage.report import report_lines

__all__ = ["NAME", "add_command", "endpoint_address", "fetch_report"]

NAME = "report"
HELP = "the running appliance's incident report (top IPs, refusals, bans, webhook, workers)"
TIMEOUT = 5.0


class ReportError(Exception):
    """Why the report could not be fetched: one line."""


def endpoint_address(key, description):
    """Where a client reaches the server endpoint ``description`` (of config ``key``):
    ``(host, port)`` (a wildcard interface is reached on loopback) or a unix socket's
    path. ReportError for one a client cannot reach by its description."""
    if not description:
        raise ReportError(f"{key} is \"\" (off): nothing listens to ask")
    fields = endpoint_fields(description)
    kind = fields[0].lower()
    if kind == "unix" and len(fields) > 1:
        return fields[1]
    if kind not in ("tcp", "tcp6"):
        raise ReportError(f"{key}: cannot connect to a {kind}: endpoint ({description!r})")
    positional = [field for field in fields[1:] if "=" not in field]
    options = dict(field.partition("=")[::2] for field in fields[1:] if "=" in field)
    port = options.get("port", positional[0] if positional else "")
    interface = options.get("interface", positional[1] if len(positional) > 1 else "")
    if not port.isdigit() or int(port) == 0:
        raise ReportError(f"{key}: {description!r} names no fixed port; say where it "
                          "listens (--url / --endpoint)")
    if interface in ("", "0.0.0.0", "::"):
        interface = "::1" if kind == "tcp6" else "127.0.0.1"
    return interface, int(port)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _get_unix(path, timeout):
    connection = _UnixHTTPConnection(path, timeout)
    try:
        connection.request("GET", "/report")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ReportError(f"unix:{path} /report answered {response.status}: "
                              f"{body.decode('utf-8', 'replace').strip()}")
        return body
    finally:
        connection.close()


def fetch_report(where, timeout=TIMEOUT):
    """The report document from ``where``: a URL, or a unix socket's path."""
    try:
        if where.startswith(("http://", "https://")):
            # No proxy: the report is on this host, and an http_proxy must not see it.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(where, timeout=timeout) as response:
                body = response.read()
        else:
            body = _get_unix(where, timeout)
    except urllib.error.HTTPError as e:
        raise ReportError(f"{where} answered {e.code}: "
                          f"{e.read().decode('utf-8', 'replace').strip()}") from None
    except (OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        reason = getattr(reason, "strerror", None) or reason
        raise ReportError(f"cannot ask the appliance at {where}: {reason} (is it running? "
                          "manage.http_listen says where)") from None
    try:
        return json.loads(body)
    except ValueError:
        raise ReportError(f"{where} did not answer with a JSON report") from None


def _where(args, config):
    if args.url:
        return args.url
    address = endpoint_address("manage.http_listen", config.manage.http_listen)
    if isinstance(address, str):
        return address
    host, port = address
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/report"


def _run(args, config, stdout, stderr):
    try:
        report = fetch_report(_where(args, config), args.timeout)
    except ReportError as e:
        stderr.write(f"mqttd: {e}\n")
        return 1
    if args.json:
        stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        stdout.write("\n".join(report_lines(report)) + "\n")
    return 0


def add_command(groups, config_option):
    parser = groups.add_parser(NAME, parents=[config_option], help=HELP, description=HELP)
    parser.add_argument("--url", metavar="URL",
                        help="the report's URL (default: /report on manage.http_listen)")
    parser.add_argument("--json", action="store_true", help="the JSON document, for scripts")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                        help=f"give up after this long (default {TIMEOUT:g})")
    parser.set_defaults(direct=_run)
