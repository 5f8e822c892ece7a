"""Webhook guardrails: the incident's root cause (a webhook pool and timeout too small
for the load), found by hand there, said here as an alert that names the key to change.

Evaluated every second from the tree's figures per process (``TreeMetrics.by_process``),
over the last ``WINDOW`` seconds of them:

- ``webhook_capacity``, per broker process: what its webhook client can carry,
  ``webhook.pool_size x webhook.batch_size / request latency`` messages a second (the
  issue's ``pool_size / latency``, in requests a second, times what a request may
  carry: mqttd batches), below its inbound publish rate (``webhook_submitted``). The
  latency is the window's mean (``webhook_request_seconds``); with no request answered
  in the window while every slot is busy it is at least the window. Key:
  ``webhook.pool_size``.
- ``webhook_retries``, per broker process: more than ``RETRY_SHARE`` of the window's
  requests retried (and at least ``MIN_RETRIES``); the key follows the commonest cause
  (``RETRY_KEYS``: a timeout is ``webhook.request_timeout``, the built-in tier's 503
  its full queue, ``ingest.max_queue``).
- ``ingest_queue``: the rows (or bytes) waiting for a commit at ``QUEUE_SHARE`` of
  ``ingest.max_queue`` (``ingest.max_queue_bytes``) or more: the next batches get 503.

An alert fires at the first evaluation its condition holds (and not before), is logged
once when it starts and once when it ends (an episode, not a line a second), counted in
``manage_alerts_fired{alert}`` and held in ``manage_alerts_active{alert}``; it ends once
its condition has not held for ``CLEAR_AFTER`` seconds, so one that hovers at its limit
is one episode. ``alerts()`` lists those that hold, for ``report()``.
"""
from collections import deque

import attrs
from twisted.logger import Logger

from mqttd.manage.snapshots import count_and_sum

__all__ = ["Alert", "CLEAR_AFTER", "Guardrails", "QUEUE_SHARE", "RETRY_KEYS",
           "RETRY_SHARE", "WINDOW"]

log = Logger()

WINDOW = 10.0
CLEAR_AFTER = 10.0
RETRY_SHARE = 0.1
MIN_RETRIES = 3
QUEUE_SHARE = 0.8
RETRY_KEYS = {
    "timeout": "webhook.request_timeout",
    "connection": "webhook.connect_timeout",
    "http 503": "ingest.max_queue",
    "http 429": "webhook.pool_size",
    "no address": "ingest.listen",
}
"""The key an alert on retries names for its commonest cause; other causes (5xx of a
service of your own) name ``webhook.url``: the service behind it is failing."""


@attrs.frozen
class Alert:
    """One alert that holds: ``name`` (the rule), ``process`` it is about, the ``key``
    to change, what it says, the figure and its limit, since when."""

    name: str
    process: str
    key: str
    message: str
    value: float
    limit: float
    since: float

    def as_dict(self):
        return attrs.asdict(self)


@attrs.define(eq=False)
class _Episode:
    alert: Alert
    last_held: float


def _get(figures, name, key=None):
    return figures.get((name, key), 0)


def _labelled(figures, name):
    return {key[1]: value for key, value in figures.items() if key[0] == name}


class Guardrails:
    """``evaluate(figures)`` every second or so (``figures``: ``by_process()``);
    ``alerts()`` what holds. ``webhook``/``ingest``: the ``[webhook]`` and ``[ingest]``
    sections (duck-typed: their keys are the limits), ``builtin``: the brokers post to
    the built-in tier (webhook.url empty)."""

    def __init__(self, clock, webhook, ingest, metrics, builtin=True):
        self._clock = clock
        self._webhook = webhook
        self._ingest = ingest
        self._metrics = metrics
        self._builtin = builtin
        self._history = deque()  # (time, figures), the last WINDOW seconds
        self._episodes = {}  # (name, process) -> _Episode

    def evaluate(self, figures):
        now = self._clock.seconds()
        history = self._history
        history.append((now, figures))
        while len(history) > 2 and now - history[1][0] >= WINDOW:
            history.popleft()
        then, before = history[0]
        held = []
        for process, current in figures.items():
            previous = before.get(process)
            if previous is not None and now > then:
                held += self._capacity(process, previous, current, now - then)
                held += self._retries(process, previous, current)
            held += self._queue(process, current)
        self._update(now, held)

    # -- the rules ---------------------------------------------------------------------

    def _capacity(self, process, previous, current, seconds):
        pool = _get(current, "webhook_pool_size")
        if not pool:
            return []
        submitted = _get(current, "webhook_submitted") - _get(previous, "webhook_submitted")
        rate = submitted / seconds
        count, total = count_and_sum(current, "webhook_request_seconds")
        count0, total0 = count_and_sum(previous, "webhook_request_seconds")
        if count > count0:
            latency = (total - total0) / (count - count0)
        elif _get(current, "webhook_requests_in_flight") >= pool and submitted > 0:
            latency = seconds  # none answered in the window: at least that slow
        else:
            return []
        if latency <= 0:
            return []
        batch = self._webhook.batch_size
        capacity = pool * batch / latency
        if rate <= capacity * (1 + 1e-9):  # (a mean of equal latencies is not exact)
            return []
        return [("webhook_capacity", process, "webhook.pool_size", (
            f"{process}: the webhook carries at most {capacity:,.0f} msg/s "
            f"(webhook.pool_size {pool:g} x webhook.batch_size {batch} / request latency "
            f"{latency * 1000:,.1f} ms), below the inbound {rate:,.0f} msg/s: raise "
            f"webhook.pool_size (or make the webhook answer faster)"), rate, capacity)]

    def _retries(self, process, previous, current):
        now_causes = _labelled(current, "webhook_retried")
        then_causes = _labelled(previous, "webhook_retried")
        causes = {cause: count - then_causes.get(cause, 0)
                  for cause, count in now_causes.items()}
        retried = sum(causes.values())
        requests = (sum(_labelled(current, "webhook_requests").values())
                    - sum(_labelled(previous, "webhook_requests").values()))
        share = retried / max(requests, 1)
        if retried < MIN_RETRIES or share <= RETRY_SHARE:
            return []
        cause = max(causes, key=causes.get)
        key = RETRY_KEYS.get(cause, "webhook.url")
        if cause == "http 503" and not self._builtin:
            key = "webhook.url"
        return [("webhook_retries", process, key, (
            f"{process}: {retried} webhook retries in {WINDOW:g} s ({share:.0%} of "
            f"requests), mostly {cause}: see {key}"), share, RETRY_SHARE)]

    def _queue(self, process, current):
        held = []
        for gauge, key, limit in (
                ("ingest_queue_rows", "ingest.max_queue", self._ingest.max_queue),
                ("ingest_queue_bytes", "ingest.max_queue_bytes",
                 self._ingest.max_queue_bytes)):
            waiting = _get(current, gauge)
            if limit and waiting >= QUEUE_SHARE * limit:
                held.append(("ingest_queue", process, key, (
                    f"{process}: {waiting:,} waiting for a commit, {waiting / limit:.0%} "
                    f"of {key} ({limit:,}): past it requests get 503; raise {key} (or "
                    f"ingest.batch_size, or lower webhook.max_pending)"), waiting, limit))
        return held[:1]

    # -- episodes ----------------------------------------------------------------------

    def _update(self, now, held):
        metrics = self._metrics
        seen = set()
        for name, process, key, message, value, limit in held:
            seen.add((name, process))
            episode = self._episodes.get((name, process))
            if episode is None:
                alert = Alert(name, process, key, message, value, limit, now)
                self._episodes[(name, process)] = _Episode(alert, now)
                metrics.manage_alerts_fired[name] += 1
                log.warn("alert {name}: {message}", name=name, message=message)
            else:
                episode.alert = attrs.evolve(episode.alert, key=key, message=message,
                                             value=value, limit=limit)
                episode.last_held = now
        for where, episode in list(self._episodes.items()):
            if where not in seen and now - episode.last_held >= CLEAR_AFTER:
                del self._episodes[where]
                log.info("alert {name} over ({process}): it held from {since:.0f} to "
                         "{until:.0f}", name=episode.alert.name, process=episode.alert.process,
                         since=episode.alert.since, until=episode.last_held)
        active = {}
        for name, _ in self._episodes:
            active[name] = 1
        for name in list(metrics.manage_alerts_active):
            metrics.manage_alerts_active[name] = active.pop(name, 0)
        metrics.manage_alerts_active.update(active)

    def alerts(self):
        """The alerts that hold now, the oldest first."""
        return sorted((episode.alert for episode in self._episodes.values()),
                      key=lambda alert: (alert.since, alert.name, alert.process))
