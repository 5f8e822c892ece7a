"""The incident report: what the operators of ../shared/incident.txt looked for, at once.

``build_report(view)`` answers from the master's memory only (the door, the gate, the
tree's summed metrics, the refusal history), never by asking a child, so it takes
milliseconds however loaded the workers are. Sections:

- ``top_ips``: by connections open (the door) and by connects over the last minute
  (``connect_rates``); ``flapping``: who reconnects most now, and the flapping bans;
  ``bans``: the bans in force;
- ``refusals``: by limit over the last minute, hour and day (``history``);
- ``webhook`` and ``ingest``: what the registry holds now. Latency, pool use and queue
  depth are looked up in the registry by name (``_find``): a histogram family (kind
  "histogram", samples labelled ``le`` with cumulative counts, as Prometheus buckets)
  named ``webhook_*_seconds`` gives the webhook's p50/p99, one named
  ``ingest_commit*_seconds`` the commit latency; a gauge starting with ``webhook_pool``
  the pool in use, one starting with ``ingest_queue`` the queue depth. Until such a
  metric exists the field says ``NOT_MEASURED``;
- ``alerts``, ``canary`` and ``data_gaps``: from the appliance's ``Watch``
  (``mqttd.manage.watch``): the guardrails' alerts, the canary's status
  (``NOT_CONFIGURED`` while ``manage.canary_interval`` is 0), the silent devices;
- ``workers``: connections, restarts and reporting, by process.

``report_lines(report)`` is the same document for a terminal.
"""
import heapq
import math
from collections import Counter

from mqttd.manage.output import table, when

__all__ = ["NOT_CONFIGURED", "NOT_MEASURED", "ban_dict", "build_report", "quantile",
           "refusal_totals", "report_lines", "series", "top_ips", "webhook_section"]

NOT_MEASURED = "not measured yet (no such metric in the registry)"
NOT_CONFIGURED = "not configured"
TOP = 10
WINDOWS = (("last_minute", 60.0), ("last_hour", 3600.0), ("last_day", 86400.0))

# Refusals, by the series that count them: door limits and the gate's reasons by their
# label, the brokers' own under their config key.
_REFUSALS = {"edge_refused": "{}", "edge_gate_refused": "gate: {}",
             "mqtt_connections_refused": "broker.max_connections (worker)",
             "mqtt_sessions_refused": "broker.max_sessions",
             "mqtt_client_ids_refused": "client id under $a/"}


def series(families, prefix=""):
    """{series key: value} of every non-zero sample of families named ``prefix...``;
    a key is ``name`` or ``name{label=value}``."""
    values = {}
    for family in families:
        if not family.name.startswith(prefix) or family.kind == "histogram":
            continue
        for labels, value in family.samples:
            if value:
                inner = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                values[f"{family.name}{{{inner}}}" if inner else family.name] = value
    return values


def refusal_totals(families):
    """{limit: refusals so far} over the tree (what the refusal history samples)."""
    totals = {}
    for family in families:
        shape = _REFUSALS.get(family.name)
        if shape is None:
            continue
        for labels, value in family.samples:
            key = shape.format(*labels.values()) if labels else shape
            totals[key] = totals.get(key, 0) + value
    return totals


def quantile(family, q):
    """The ``q`` quantile (0..1) of a histogram family's cumulative ``le`` buckets,
    interpolated within its bucket as Prometheus' histogram_quantile does; None if
    it has no observations."""
    buckets = Counter()
    for labels, value in family.samples:
        if "le" in labels:
            buckets[float(labels["le"])] += value
    edges = sorted(buckets)
    if not edges or not buckets[edges[-1]]:
        return None
    rank = q * buckets[edges[-1]]
    lower, below = 0.0, 0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if math.isinf(edge):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (edge - lower) * share
        lower, below = edge, count
    return lower


def _find(families, name, kind):
    return next((f for f in families if f.name == name and f.kind == kind), None)


def _latency(families, name):
    family = _find(families, name, "histogram")
    if family is None:
        return NOT_MEASURED
    return {"metric": family.name, "p50": quantile(family, 0.5), "p99": quantile(family, 0.99)}


def _gauge(families, name, of=None):
    """The gauge's sum over the tree; with ``of``, also that gauge's sum (its bound)."""
    family = _find(families, name, "gauge")
    if family is None:
        return NOT_MEASURED
    gauge = {"metric": family.name, "value": sum(value for _, value in family.samples)}
    bound = _find(families, of, "gauge") if of else None
    if bound is not None:
        gauge["of"] = sum(value for _, value in bound.samples)
    return gauge


def _retries(families):
    family = _find(families, "webhook_retried", "counter")
    if family is None:
        return NOT_MEASURED
    causes = {next(iter(labels.values())): value for labels, value in family.samples if labels}
    total = sum(value for _, value in family.samples)
    return {"metric": family.name, "total": total, **({"by_cause": causes} if causes else {})}


def _by_label(families, name):
    family = next((f for f in families if f.name == name), None)
    if family is None:
        return {}
    return {next(iter(labels.values()), ""): value for labels, value in family.samples}


def _ip(address, open_, connects, per_second):
    return {"ip": address, "open": open_, "connects": connects,
            "per_second": round(per_second, 2)}


def top_ips(view, limit=TOP):
    opened = view.door.open_counts()
    totals, others, covered = view.connect_rates.totals()
    per = max(covered, 1.0)
    by_open = heapq.nlargest(limit, opened.items(), key=lambda item: (item[1], item[0]))
    by_rate = heapq.nlargest(limit, totals.items(), key=lambda item: (item[1], item[0]))
    return {
        "window": round(covered, 1),
        "by_connections": [_ip(a, n, totals.get(a, 0), totals.get(a, 0) / per)
                           for a, n in by_open],
        "by_connect_rate": [_ip(a, opened.get(a, 0), n, n / per) for a, n in by_rate],
        "uncounted_connects": others,
    }


def ban_dict(record):
    return {"kind": record.kind, "value": record.value, "who": record.who,
            "reason": record.reason, "at": record.at, "until": record.until}


def bans_section(view, limit=TOP):
    active = sorted(view.gate.bans.active(), key=lambda record: -record.at)
    return {"active": len(active), "by_kind": dict(Counter(r.kind for r in active)),
            "newest": [ban_dict(record) for record in active[:limit]]}


def flapping_section(view, limit=TOP):
    config = view.config.flapping_detect
    busiest = view.gate.flapping_now(limit)
    bans = [record for record in view.gate.bans.active() if record.who == "flapping"]
    return {"enabled": config.enable, "max_count": config.max_count,
            "window_time": config.window_time,
            "clients": [{"kind": kind, "value": value, "disconnects": count, "last": last}
                        for kind, value, count, last in busiest],
            "bans": len(bans),
            "newest_bans": [ban_dict(r) for r in sorted(bans, key=lambda r: -r.at)[:limit]]}


def refusals_section(view):
    section = {}
    for name, seconds in WINDOWS:
        grown, covered = view.refusals.since(seconds)
        section[name] = {"seconds": round(covered, 1),
                         "by_limit": dict(sorted(grown.items(), key=lambda kv: -kv[1]))}
    return section


def webhook_section(view, families):
    webhook = view.config.webhook
    return {"target": webhook.url or "built-in ingest", "pool_size": webhook.pool_size,
            "request_timeout": webhook.request_timeout,
            "latency": _latency(families, "webhook_request_seconds"),
            "pool_in_use": _gauge(families, "webhook_requests_in_flight",
                                  of="webhook_pool_size"),
            "retries": _retries(families),
            "figures": series(families, "webhook_")}


def ingest_section(view, families):
    return {"enabled": view.config.ingest.enabled, "max_queue": view.config.ingest.max_queue,
            "queue_depth": _gauge(families, "ingest_queue_rows"),
            "commit_latency": _latency(families, "ingest_commit_seconds"),
            "figures": series(families, "ingest_")}


def canary_section(watch):
    """The canary's status (``mqttd.manage.canary``), or NOT_CONFIGURED while it is off."""
    status = watch.canary_status() if watch is not None else {"enabled": False}
    return status if status.get("enabled", True) else NOT_CONFIGURED


def gaps_section(view, limit):
    """The devices gone silent (``mqttd.manage.gaps``), the most recently quiet first."""
    if view.watch is None or not view.config.manage.gap_factor:
        return NOT_CONFIGURED
    return view.watch.gaps()[:limit]


def workers_section(families):
    connections = _by_label(families, "mqtt_connections_open_by_process")
    restarts = _by_label(families, "tree_restarts")
    reporting = _by_label(families, "tree_child_reporting")
    names = sorted(set(connections) | set(restarts) | set(reporting))
    return [{"process": name, "connections": connections.get(name, 0),
             "restarts": restarts.get(name, 0),
             "reporting": bool(reporting.get(name, 1))} for name in names]


def build_report(view, limit=TOP):
    """The report as one JSON-ready dict (see the module)."""
    families = list(view.families())
    now = view.clock.seconds()
    return {
        "generated_at": now, "uptime": round(now - view.started, 1), "mode": view.mode,
        "workers_configured": view.config.server.workers,
        "top_ips": top_ips(view, limit), "flapping": flapping_section(view, limit),
        "bans": bans_section(view, limit), "refusals": refusals_section(view),
        "webhook": webhook_section(view, families), "ingest": ingest_section(view, families),
        "alerts": view.watch.alerts() if view.watch is not None else [],
        "canary": canary_section(view.watch),
        "data_gaps": gaps_section(view, limit),
        "workers": workers_section(families),
    }


# -- text --------------------------------------------------------------------------------

def _measured(value, unit=" s"):
    if not isinstance(value, dict):
        return str(value)
    if "value" in value:
        of = f" of {value['of']}" if "of" in value else ""
        return f"{value['value']}{of} ({value['metric']})"
    shown = [f"{q} {'-' if value[q] is None else f'{value[q]:.4g}{unit}'}"
             for q in ("p50", "p99")]
    return f"{', '.join(shown)} ({value['metric']})"


def _retried(value):
    if not isinstance(value, dict):
        return str(value)
    causes = ", ".join(f"{k} {v:g}" for k, v in sorted(value.get("by_cause", {}).items()))
    return f"{value['total']:g}{f' ({causes})' if causes else ''} ({value['metric']})"


def _table(headers, rows):
    """A section's table, indented; "(none)" for no rows."""
    if not rows:
        return ["  (none)"]
    return [f"  {line}" for line in table(headers, rows)]


def _ips(rows):
    return _table(("IP", "OPEN", "CONNECTS", "PER S"),
                  [(r["ip"], r["open"], r["connects"], r["per_second"]) for r in rows])


def _figures(figures):
    return [f"  {key} = {value:g}" for key, value in sorted(figures.items())]


def report_lines(report):
    """The report for a terminal: one section after another, tables aligned."""
    top = report["top_ips"]
    lines = [f"mqttd report at {when(report['generated_at'])} ({report['mode']}, "
             f"up {report['uptime']:g} s)", "",
             "Top IPs by connections open:", *_ips(top["by_connections"]), "",
             f"Top IPs by connects over the last {top['window']:g} s:",
             *_ips(top["by_connect_rate"])]
    if top["uncounted_connects"]:
        lines.append(f"  (and {top['uncounted_connects']} connects of addresses not counted "
                     "one by one)")
    flapping = report["flapping"]
    lines += ["", f"Flapping ({flapping['max_count']} disconnects within "
                  f"{flapping['window_time']:g} s ban; {flapping['bans']} flapping bans "
                  "in force):",
              *_table(("KIND", "VALUE", "DISCONNECTS", "LAST"),
                     [(c["kind"], c["value"], c["disconnects"], when(c["last"]))
                      for c in flapping["clients"]])]
    bans = report["bans"]
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(bans["by_kind"].items()))
    lines += ["", f"Bans in force: {bans['active']}{f' ({kinds})' if kinds else ''}",
              *_table(("KIND", "VALUE", "UNTIL", "WHO", "REASON"),
                     [(b["kind"], b["value"], when(b["until"]), b["who"], b["reason"])
                      for b in bans["newest"]])]
    lines += ["", "Refusals by limit:"]
    for name, _ in WINDOWS:
        window = report["refusals"][name]
        counts = ", ".join(f"{key} {n}" for key, n in window["by_limit"].items()) or "none"
        lines.append(f"  {name.replace('_', ' ')} ({window['seconds']:g} s): {counts}")
    webhook = report["webhook"]
    lines += ["", f"Webhook to {webhook['target']} (pool_size {webhook['pool_size']}, "
                  f"request_timeout {webhook['request_timeout']:g} s):",
              f"  latency: {_measured(webhook['latency'])}",
              f"  pool in use: {_measured(webhook['pool_in_use'])}",
              f"  retries: {_retried(webhook['retries'])}", *_figures(webhook["figures"])]
    ingest = report["ingest"]
    lines += ["", f"Ingest (max_queue {ingest['max_queue']}):",
              f"  queue depth: {_measured(ingest['queue_depth'])}",
              f"  commit latency: {_measured(ingest['commit_latency'])}",
              *_figures(ingest["figures"])]
    lines += ["", f"Alerts: {len(report['alerts']) or 'none'}",
              *(f"  {a['name']} ({a['process']}): {a['message']}"
                + (f" [{a['key']}]" if a.get("key") else "") for a in report["alerts"])]
    canary = report["canary"]
    lines += ["", "Canary: " + (canary if isinstance(canary, str) else ", ".join(
        f"{key} {value}" for key, value in canary.items() if key != "enabled"))]
    gaps = report["data_gaps"]
    if isinstance(gaps, str) or not gaps:
        lines += ["", f"Data gaps: {gaps or 'none'}"]
    else:
        lines += ["", "Data gaps:", *_table(
            ("CLIENT ID", "ACCOUNT", "SILENT FOR", "USUAL INTERVAL"),
            [(g["client_id"], g["account"] or "-", f"{g['silent_for']:.0f} s",
              f"{g['usual_interval']:.1f} s") for g in gaps])]
    lines += ["", "Processes:",
              *_table(("PROCESS", "CONNECTIONS", "RESTARTS", "REPORTING"),
                     [(w["process"], w["connections"], w["restarts"], w["reporting"])
                      for w in report["workers"]])]
    return lines
