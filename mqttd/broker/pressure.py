"""Overload pauses publishers instead of closing them: the broker's side of Pressure.

When the message sink is full (``mqttd.store.pressure.Pressure``), refusing publishes
would close every publisher unacknowledged, and they would all reconnect at once and
publish again: a reconnect storm on top of the overload. Instead a connection that
publishes while the sink is full stops reading from its socket right after that
publish (the client's own TCP window then holds it back) and waits here; when the sink
drains they are read again, first paused first resumed, until it fills up again.

A paused client is still closed at its ack deadline (``webhook.ack_timeout``) if its
messages are not committed by then, as before; keepalive does not count the silence we
cause. Connections that only subscribe are never paused.
"""
from collections import deque

from twisted.logger import Logger

__all__ = ["PublisherThrottle"]

log = Logger()


class PublisherThrottle:
    """Relays a sink's pressure to the connections that publish.

    ``full`` is read once per publish. A connection that paused itself because of it
    calls ``hold(connection)``; ``connection.sink_drained()`` is called when the sink
    drains (a connection closed meanwhile ignores it). With no pressure (a sink that
    cannot fill up) nothing is ever held.
    """

    __slots__ = ("full", "_held")

    def __init__(self, pressure=None):
        self.full = False
        self._held = deque()  # paused connections, in the order they paused
        if pressure is not None:
            self.full = pressure.full
            pressure.subscribe(self._on_full, self._on_drained)

    def __len__(self):
        """Connections waiting for the sink to drain."""
        return len(self._held)

    def hold(self, connection):
        """``connection`` paused itself after a publish found the sink full."""
        self._held.append(connection)

    def _on_full(self):
        self.full = True

    def _on_drained(self):
        self.full = False
        held = self._held
        # A resumed connection submits what it had read before its pause, and that may
        # fill the sink again: then the rest stay paused, still first in line (one
        # that pauses again queues behind them).
        while held and not self.full:
            connection = held.popleft()
            try:
                connection.sink_drained()
            except Exception:
                # One broken connection must not leave the others paused for good.
                log.failure("resuming a paused publisher failed")
