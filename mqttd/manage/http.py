"""The operator's HTTP port (``manage.http_listen``): ``/metrics``, ``/healthz``, ``/report``.

Loopback only unless ``manage.http_allow_remote``: the figures name accounts, reasons
and the load of every worker, which is nobody's business off the host (put a scraping
agent or a proxy with TLS beside it). Answers come from memory, at once: the tree's
figures are already gathered (``mqttd.manage.tree_metrics``), so a scrape never waits on
a child. Requests are not logged: a scrape every few seconds would fill the journal.

``/healthz``: 200 "ok" when ``health()`` says so, else 503 and the reason, one line, for
a load balancer, systemd's watchdog script or a human with curl.

``/report``: the incident report as JSON (``mqttd.manage.report``; what ``mqttd report``
reads), built from the master's memory at each request. It names client addresses,
client ids and bans, so it is answered to loopback peers (or a unix socket's) only,
even where ``http_allow_remote`` opens /metrics to the network.
"""
import json

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from mqttd.listeners import KeyedListener, loopback_refusal, server_endpoint
from mqttd.manage.exposition import CONTENT_TYPE, Exposition

__all__ = ["ManageHTTP", "manage_site"]

log = Logger()

_KEY = "manage.http_listen"


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, exposition):
        super().__init__()
        self._exposition = exposition

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE.encode("ascii"))
        return self._exposition.render()


class _HealthPage(Resource):
    isLeaf = True

    def __init__(self, health):
        super().__init__()
        self._health = health

    def render_GET(self, request):
        healthy, reason = self._health()
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return (reason + "\n").encode("utf-8")


class _ReportPage(Resource):
    isLeaf = True

    def __init__(self, report):
        super().__init__()
        self._report = report

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"no-store")
        peer = request.getClientAddress()
        if isinstance(peer, (IPv4Address, IPv6Address)) and loopback_refusal(
                peer, "", "") is not None:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"the report is served to loopback peers only\n"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self._report()).encode("utf-8")


class _QuietSite(Site):
    noisy = False  # no "Starting factory" lines

    def log(self, request):
        """No access log: a scrape every few seconds would fill the journal."""


def manage_site(families, health, report=None):
    """The site: ``/metrics`` renders ``families()`` (``tree_metrics.Family``), ``/healthz``
    answers ``health()`` -> (healthy, reason), ``/report`` (if ``report``) is
    ``report()`` as JSON; anything else is 404."""
    root = Resource()
    root.putChild(b"metrics", _MetricsPage(Exposition(families)))
    root.putChild(b"healthz", _HealthPage(health))
    if report is not None:
        root.putChild(b"report", _ReportPage(report))
    site = _QuietSite(root)
    site.displayTracebacks = False
    return site


class ManageHTTP(MultiService):
    """The site on ``config.http_listen`` (the ``[manage]`` section); ConfigError at
    construction for a bad endpoint, SystemExit at bind for one it cannot use."""

    def __init__(self, reactor, config, families, health, report=None):
        super().__init__()
        endpoint = server_endpoint(reactor, _KEY, config.http_listen)
        refuse = None if config.http_allow_remote else (
            lambda address: loopback_refusal(
                address, "/metrics tells the load and accounts of the whole appliance",
                "manage.http_allow_remote"))
        self._listener = KeyedListener(endpoint, manage_site(families, health, report), _KEY,
                                       config.http_listen, refuse=refuse)
        self._listener.setServiceParent(self)
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self._listener.on_bound(self._bound)

    def _bound(self, port):
        if port is None:  # refused; start-up is stopping
            return port
        self.port = port
        address = port.getHost()
        if hasattr(address, "port"):
            host = f"[{address.host}]" if ":" in address.host else address.host
            where = f"http://{host}:{address.port}/metrics"
        else:
            where = str(address)
        log.info("metrics and health listening on {where} ({description})", where=where,
                 description=self._listener.description)
        return port
