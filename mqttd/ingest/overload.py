"""What the webhook client may hold awaiting commit: PendingBudget.

Overload pauses, it does not refuse: past ``max_pending`` messages or
``max_pending_bytes`` (payload + topic) awaiting their commit, ``pressure`` says full,
and the broker stops reading from the clients that publish; it says drained once both
are below 90 % again. Messages the broker had already read are still taken, up to a
hard ceiling of 125 % of either limit, which keeps memory bounded: past it a message is
refused ("overload"). Counted in the registry's ``webhook_pending`` and
``webhook_pending_bytes``, which this object alone changes.
"""
from twisted.logger import Logger

from mqttd.store.pressure import Pressure

__all__ = ["PendingBudget"]

# The namespace of the overload line when the webhook client logged it itself.
log = Logger(namespace="mqttd.ingest.client")

_LOG_EVERY = 10.0  # seconds between overload lines: it may come and go often


class PendingBudget:
    """Full at either limit, refused at the hard ceiling (125 %), drained at 90 % of both."""

    def __init__(self, clock, max_pending, max_pending_bytes, metrics):
        self._clock = clock
        self._metrics = metrics
        self._full_pending = max_pending
        self._full_bytes = max_pending_bytes
        self._hard_pending = max_pending + max_pending // 4
        self._hard_bytes = max_pending_bytes + max_pending_bytes // 4
        self._low_pending = max_pending * 9 // 10
        self._low_bytes = max_pending_bytes * 9 // 10
        self.pressure = Pressure()
        self._drain_call = None
        self._full_logged_at = None

    def take(self, held):
        """Count one message of ``held`` bytes as pending; False (nothing counted) if the
        hard ceiling is reached. At a soft limit the broker pauses publishers
        (synchronously: the one whose message this is stops right after it)."""
        metrics = self._metrics
        pending = metrics.webhook_pending
        pending_bytes = metrics.webhook_pending_bytes
        if pending >= self._hard_pending or pending_bytes >= self._hard_bytes:
            return False
        metrics.webhook_pending = pending = pending + 1
        metrics.webhook_pending_bytes = pending_bytes = pending_bytes + held
        if ((pending >= self._full_pending or pending_bytes >= self._full_bytes)
                and not self.pressure.full):
            self._fill()
        return True

    def release(self, n, held):
        """``n`` pending messages of ``held`` bytes settled (committed or failed)."""
        metrics = self._metrics
        metrics.webhook_pending -= n
        metrics.webhook_pending_bytes -= held

    def check_drained(self):
        """After a release: once at most 90 % of both limits, say drained.

        On the next reactor turn, not from inside a settle: the broker then resumes
        connections, which submit what they had read meanwhile.
        """
        if self.pressure.full and self._drain_call is None and self._below_low_water():
            self._drain_call = self._clock.callLater(0, self._drain)

    def stop(self):
        if self._drain_call is not None:
            self._drain_call.cancel()
            self._drain_call = None

    def _fill(self):
        metrics = self._metrics
        metrics.webhook_overloads += 1
        now = self._clock.seconds()
        if self._full_logged_at is None or now - self._full_logged_at >= _LOG_EVERY:
            self._full_logged_at = now
            log.warn("overload: {pending} messages, {bytes} bytes awaiting commit; "
                     "publishers paused until it drains", pending=metrics.webhook_pending,
                     bytes=metrics.webhook_pending_bytes)
        self.pressure.fill()

    def _below_low_water(self):
        metrics = self._metrics
        return (metrics.webhook_pending <= self._low_pending
                and metrics.webhook_pending_bytes <= self._low_bytes)

    def _drain(self):
        self._drain_call = None
        if self._below_low_water():
            self.pressure.drain()
