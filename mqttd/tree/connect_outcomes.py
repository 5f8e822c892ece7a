"""What the master says about a socket it admitted but never handed to a worker.

The door counts what it refuses at accept (and the accept loop traces it); after that, a
socket may still close in the master before its CONNECT is read (no CONNECT within
broker.idle_timeout, a protocol error, an oversize CONNECT, the client gone: ``closed``),
be refused by the master itself once the gate let it in (CONNACK 3: no worker took it
within broker.idle_timeout, the gate's path failed, the master stops: ``refused``), or
fail its hand-off (the worker refused the fd, its channel was lost, its queue full:
``handoff_failed``). Each is counted by reason, logged within the master's per-address
budget, so a flood of them is visible and not silent, and written to the per-client
trace (``MasterTrace``: a ``disconnect`` before the CONNECT, else a ``refused`` naming
its reason), so no path the master closes leaves a client's trace without its end.
"""
from twisted.logger import Logger

from mqttd.edge.handoff_master import HandoffQueueFull, HandoffRefused

__all__ = ["ConnectOutcomes", "INTERNAL_ERROR", "NO_WORKER", "STOPPING"]

log = Logger()

NO_WORKER = "no worker in time"
"""CONNACK 3: no worker was up to take the client within broker.idle_timeout."""
STOPPING = "master stopping"
"""The master's own stop: traced, not counted nor logged (nothing to tell)."""
INTERNAL_ERROR = "internal error"
"""CONNACK 3: the gate's path failed (a bug: logged with its traceback)."""

_QUIET = {STOPPING}


def _closed_reason(reason):
    """The ``edge_connect_closed`` label of a PendingConnect's close ``reason``."""
    if reason == "no CONNECT in time":
        return "idle_timeout"
    if reason.startswith("protocol error"):
        return "protocol_error"
    if reason in ("closed before CONNECT", "lost"):
        return "closed"
    if reason == "partial input budget":
        return "partial_input"
    if reason == "packet timeout":
        return "packet_timeout"
    return "other"


def _handoff_reason(failure):
    if failure.check(HandoffQueueFull):
        return "queue_full"
    if failure.check(HandoffRefused):
        return "refused"
    return "channel_lost"


class ConnectOutcomes:
    """Counts into ``metrics``, logs within ``log_rate`` (the master's budget) and
    writes to ``trace`` (the master's MasterTrace, or NoTrace)."""

    def __init__(self, metrics, log_rate, trace):
        self._metrics = metrics
        self._log_rate = log_rate
        self._trace = trace

    def closed(self, pending, reason):
        """``pending`` closed before its CONNECT was read, for ``reason``."""
        self._trace.not_connected(pending, reason)
        if reason in _QUIET:
            return
        self._metrics.edge_connect_closed[_closed_reason(reason)] += 1
        if self._log_rate.allow(pending.host):
            log.info("closed {host} before its CONNECT was judged: {reason}",
                     host=pending.host, reason=reason)

    def refused(self, pending, connect, client_id, account, reason, code):
        """The master answers ``connect`` (as ``client_id`` of ``account``, whom the
        gate let in) with CONNACK ``code`` itself, for ``reason``: NO_WORKER (counted in
        ``mqtt_connect_refused{reason="no worker"}``, logged), INTERNAL_ERROR (counted
        and logged by ``judging_failed``) or STOPPING."""
        if reason == NO_WORKER:
            self._metrics.mqtt_connect_refused["no worker"] += 1
            if self._log_rate.allow(pending.host):
                log.warn("CONNACK {code} to {client_id} ({host}): no worker took it within "
                         "broker.idle_timeout", code=code, client_id=client_id,
                         host=pending.host)
        self._trace.refused(pending, connect, client_id, account, reason, code=code)

    def handoff_failed(self, pending, connect, client_id, account, slot, failure):
        """The hand-off of ``pending`` to worker ``slot`` failed: the master closed it
        without a CONNACK (the client reconnects)."""
        why = _handoff_reason(failure)
        self._metrics.edge_handoff_failed[why] += 1
        if self._log_rate.allow(pending.host):
            log.warn("hand-off of {client_id} ({host}) to worker {slot} failed: {error}",
                     client_id=client_id, host=pending.host, slot=slot,
                     error=failure.getErrorMessage())
        self._trace.refused(pending, connect, client_id, account, "hand-off failed",
                            stage="handoff", detail=why, worker=slot)

    def judging_failed(self, host, failure):
        """A bug on the gate's path: the client gets CONNACK 3 (``refused`` with
        INTERNAL_ERROR) and the slot back."""
        self._metrics.edge_connect_closed["internal_error"] += 1
        log.failure("judging the CONNECT of {host} failed", failure, host=host)
