"""Back-pressure from a message sink to its submitters: "full" and "drained" events.

A sink that holds messages awaiting their commit (the webhook client) has a soft
limit. Refusing a publish past it closes the client's connection unacknowledged, so an
overloaded sink would turn every publisher into a reconnect storm. Instead the sink
says it is full, the broker stops reading from the connections that publish, and the
sink says when it has drained (fallen below a low-water mark) so they are read again.

``Pressure`` is only the signal: the sink decides when it is full or drained, the
broker decides whom to pause (``mqttd.broker.pressure``).
"""
from twisted.logger import Logger

__all__ = ["Pressure"]

log = Logger()


class Pressure:
    """Whether a sink is past its soft limit, and who wants to know when that changes.

    ``full`` is read on the hot path (once per publish), so it is a plain attribute.
    Listeners are called synchronously, in the order they subscribed; one that raises
    is logged and does not keep the others from hearing.
    """

    __slots__ = ("full", "_listeners")

    def __init__(self):
        self.full = False
        self._listeners = []

    def subscribe(self, on_full, on_drained):
        """Call ``on_full()`` when the sink fills up and ``on_drained()`` when it drains."""
        self._listeners.append((on_full, on_drained))

    def fill(self):
        """The sink went past its soft limit (a no-op if it already was)."""
        if not self.full:
            self.full = True
            self._tell(0)

    def drain(self):
        """The sink fell below its low-water mark (a no-op if it was not full)."""
        if self.full:
            self.full = False
            self._tell(1)

    def _tell(self, which):
        for listener in list(self._listeners):
            try:
                listener[which]()
            except Exception:
                log.failure("pressure listener failed")
