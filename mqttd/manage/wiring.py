"""The operator's side of a running appliance, added to the master or the single process.

``add_manage(reactor, config, service)`` is what ``twistd mqttd`` calls once the service
is built (``mqttd.tap``), for either: the ``ApplianceView`` the helpers and the report
read (the door's accepts fed to ``ConnectRates``, the refusal history sampled every
10 s), ``/metrics``, ``/healthz`` and ``/report`` on ``manage.http_listen``, and the
telnet manhole on ``manage.manhole_listen`` when ``manage.manhole_password_file`` is set.

What it needs of ``service``: ``metrics``, ``tree_metrics``, ``health``, ``door`` and
``gate`` (a GateService); the master's ``questions``, or the single process's
``broker``. Its ``trace`` (``mqttd.manage.trace_service``: the single process's
TraceService, the master's MasterTrace, NoTrace while ``manage.trace_file`` is empty)
gives the manhole's ``trace()`` its ``recent_events(client_id)`` (a Deferred of event
dicts) and ``trace_add``/``trace_rm``/``trace_list`` their rules; off, they say
"trace not enabled".
"""
from mqttd.broker.lograte import LogRateLimit
from mqttd.manage.connect_rates import ConnectRates
from mqttd.manage.history import CounterHistory
from mqttd.manage.report import build_report, refusal_totals
from mqttd.manage.view import ApplianceView, local_clients, tree_clients

__all__ = ["add_manage", "appliance_view"]


def appliance_view(reactor, config, service):
    """The ``ApplianceView`` of ``service``, the door watched from now on."""
    rates = ConnectRates(reactor)
    service.door.watch(rates.seen)
    families = service.tree_metrics.families
    refusals = CounterHistory(reactor, lambda: refusal_totals(families()))
    if config.server.workers:
        mode, clients = "tree", tree_clients(service.questions)
    else:
        mode, clients = "single", local_clients(service.broker, "mqttd",
                                                service.broker.static_users)
    trace = getattr(service, "trace", None)
    trace = trace if getattr(trace, "enabled", False) else None
    return ApplianceView(reactor, config, mode, families, service.door, service.gate.gate,
                         service.gate.store, rates, refusals, clients,
                         recent_events=None if trace is None else trace.recent_events,
                         watch=getattr(service, "watch", None), trace=trace)


def add_manage(reactor, config, service):
    """Add the view's history, the HTTP site and the manhole under ``service``; the view."""
    view = appliance_view(reactor, config, service)
    view.refusals.setServiceParent(service)
    manage = config.manage
    if manage.http_listen:
        from mqttd.manage.http import ManageHTTP
        ManageHTTP(reactor, manage, service.tree_metrics.families, service.health,
                   report=lambda: build_report(view)).setServiceParent(service)
    if manage.manhole_password_file and manage.manhole_listen:
        from mqttd.manage.helpers import namespace
        from mqttd.manage.manhole import ManholeService
        log_rate = LogRateLimit(reactor, config.broker.log_lines_per_ip,
                                config.broker.log_lines_window, metrics=service.metrics)
        ManholeService(reactor, manage, lambda who: namespace(view, who), service.metrics,
                       log_rate).setServiceParent(service)
    return view
