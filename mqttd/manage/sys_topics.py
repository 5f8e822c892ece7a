"""``$SYS/broker/...``: mosquitto's topics, for clients and dashboards that read them.

Every ``manage.sys_interval`` seconds (mosquitto's ``sys_interval``, 10 by default; 0:
none) the process that sees the whole tree (the master, or the single process) turns
the tree's figures into mosquitto's topics and values (``SysTree.values``) and hands
them to every broker (``publish_sys``): each retains them, QoS 0, in memory only (no
row in ``messages``, nothing in the retained table: they are figures, not data), and
delivers to its subscribers those that changed, as mosquitto publishes only changes
(uptime changes every time). A broker that restarts gets the whole set at the next
interval.

Who reads them: ``#`` never matches a ``$`` topic, so only an explicit ``$SYS/...``
subscription; a client of an account gets 0x80 for it (its namespace has no ``$``), as
before. The figures are the sums the exposition serves (``mqttd.manage.tree_metrics``);
where mosquitto counts every packet (``messages/received``) mqttd counts PUBLISH
packets, the one figure it keeps (``publish/messages/received`` says the same).
The load averages are mosquitto's: per-minute rates smoothed exponentially over 1, 5
and 15 minutes at each interval.
"""
import math
from importlib import metadata

__all__ = ["SysTree", "publish_sys", "totals"]

_COUNTS = (
    # topic, the registry's figure
    ("clients/connected", "mqtt_connections_open"),
    ("messages/received", "mqtt_publish_received"),
    ("messages/sent", "mqtt_delivered"),
    ("publish/messages/received", "mqtt_publish_received"),
    ("publish/messages/sent", "mqtt_delivered"),
    ("publish/messages/dropped", "mqtt_dropped"),
)
_LOADS = (
    ("messages/received", "mqtt_publish_received"),
    ("messages/sent", "mqtt_delivered"),
    ("publish/received", "mqtt_publish_received"),
    ("publish/sent", "mqtt_delivered"),
    ("publish/dropped", "mqtt_dropped"),
    ("connections", "mqtt_connections_accepted"),
    ("sockets", "edge_admitted"),
)
_MINUTES = (1, 5, 15)


def _version():
    try:
        return metadata.version("mqttd")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown"


def totals(families):
    """{name: the sum of its samples} of ``families`` (``TreeMetrics.families``):
    labelled families summed over their labels; histograms left out."""
    summed = {}
    for family in families:
        if family.kind != "histogram":
            summed[family.name] = sum(value for _, value in family.samples)
    return summed


class SysTree:
    """``values(figures)``: {topic: payload text} of the ``$SYS/broker`` tree, from
    ``figures`` (``totals``) now; loads move on at each call, as mosquitto's do at each
    ``sys_interval``."""

    def __init__(self, clock, version=None):
        self._clock = clock
        self._started = clock.seconds()
        self._version = version or _version()
        self._last = None  # (time, figures) of the last call
        self._loads = {}  # (topic, minutes) -> its load
        self._maximum = 0

    def values(self, figures):
        now = self._clock.seconds()
        connected = figures.get("mqtt_connections_open", 0)
        self._maximum = max(self._maximum, connected)
        values = {
            "$SYS/broker/version": f"mqttd version {self._version}",
            "$SYS/broker/uptime": f"{int(now - self._started)} seconds",
            "$SYS/broker/clients/maximum": str(self._maximum),
        }
        for topic, name in _COUNTS:
            values[f"$SYS/broker/{topic}"] = str(int(figures.get(name, 0)))
        last = self._last
        if last is not None and now > last[0]:
            then, before = last
            elapsed = now - then
            for topic, name in _LOADS:
                per_minute = max(0, figures.get(name, 0) - before.get(name, 0)) * 60.0 / elapsed
                for minutes in _MINUTES:
                    exponent = math.exp(-elapsed / (60.0 * minutes))
                    current = self._loads.get((topic, minutes), 0.0)
                    current = per_minute + exponent * (current - per_minute)
                    self._loads[(topic, minutes)] = current
        for (topic, minutes), load in self._loads.items():
            values[f"$SYS/broker/load/{topic}/{minutes}min"] = f"{load:.2f}"
        self._last = (now, figures)
        return values


def publish_sys(broker, values):
    """Retain ``values`` ({topic: payload text}, ``SysTree.values``, as it crossed the
    master's channel) in ``broker`` and deliver those that changed to its subscribers,
    as QoS 0 retained messages that are stored nowhere. Anything else is ignored."""
    if not isinstance(values, dict):
        return
    metrics = broker.metrics
    now = broker.clock.seconds()
    retained = broker.retained
    for topic, payload in values.items():
        if not (isinstance(topic, str) and topic.startswith("$SYS/")
                and isinstance(payload, str) and payload):
            continue
        payload = payload.encode("utf-8")
        kept = retained.get(topic)
        if kept is not None and kept.payload == payload:
            continue
        message = broker.make_message("$SYS", None, topic, payload, 0, True, now)
        broker.route(message, forward=False)
        metrics.manage_sys_published += 1
