"""What the master says about a socket it admitted but never handed to a worker.

The door counts what it refuses at accept; after that, a socket may still close in the
master before its CONNECT is read (no CONNECT within broker.idle_timeout, a protocol
error, an oversize CONNECT, the client gone) or fail its hand-off (the worker refused
the fd, its channel was lost, its queue full). Each is counted by reason and logged
within the master's per-address budget, so a flood of them is visible and not silent.
"""
from twisted.logger import Logger

from mqttd.edge.handoff_master import HandoffQueueFull, HandoffRefused

__all__ = ["ConnectOutcomes"]

log = Logger()

_QUIET = {"master stopping"}  # the master's own stop: nothing to tell


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
    """Counts into ``metrics`` and logs within ``log_rate`` (the master's budget)."""

    def __init__(self, metrics, log_rate):
        self._metrics = metrics
        self._log_rate = log_rate

    def closed(self, host, reason):
        if reason in _QUIET:
            return
        self._metrics.edge_connect_closed[_closed_reason(reason)] += 1
        if self._log_rate.allow(host):
            log.info("closed {host} before its CONNECT was judged: {reason}",
                     host=host, reason=reason)

    def handoff_failed(self, host, client_id, slot, failure):
        self._metrics.edge_handoff_failed[_handoff_reason(failure)] += 1
        if self._log_rate.allow(host):
            log.warn("hand-off of {client_id} ({host}) to worker {slot} failed: {error}",
                     client_id=client_id, host=host, slot=slot,
                     error=failure.getErrorMessage())

    def judging_failed(self, host, failure):
        """A bug on the gate's path: the client gets CONNACK 3 and the slot back."""
        self._metrics.edge_connect_closed["internal_error"] += 1
        log.failure("judging the CONNECT of {host} failed", failure, host=host)
