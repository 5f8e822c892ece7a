"""The tree's retained values in the master's order (``mqttd.tree.relay`` sends them).

The master reads every worker's retained sets and clears, one at a time: the order it
reads them in is THE order, and the last one wins on every worker. Within one broker run
the message key orders instead (``newer_of_run``, the rule of SQLite's ``retained``
table and of a worker's store): an older message of a run whose newer one is held here
does not replace it.

Cleared topics are remembered too, newest last, up to ``max_cleared_bytes``: a worker
that restarts reads SQLite, which may have committed a set that crossed the clear
after it, and must be told the clear. Past that bound the oldest are forgotten
(counted in ``tree_retained_clears_forgotten``): such a worker keeps what it read.
"""
from mqttd.store.retained import newer_of_run
from mqttd.store.sink import Message
from mqttd.tree.relay_wire import encode, peek

__all__ = ["CLEARED_BYTES", "RetainedOrder"]

CLEARED_BYTES = 1 << 20
"""Bytes of cleared topics remembered: their characters, and ``_ENTRY_BYTES`` each."""
_ENTRY_BYTES = 64  # a dict slot and a str object's header, beside the topic's characters


def _clear_body(topic):
    """The body that clears ``topic``'s retained value."""
    return encode(Message("", "", None, topic, b"", 0, True, 0.0))


class RetainedOrder:
    """The newest body of each retained topic, and the topics cleared lately."""

    def __init__(self, metrics, max_cleared_bytes=CLEARED_BYTES):
        self._metrics = metrics
        self._max_cleared_bytes = max_cleared_bytes
        self._values = {}  # topic -> body of its newest retained message
        self._cleared = {}  # topic -> None, oldest first
        self._cleared_bytes = 0

    def __len__(self):
        """Topics with a retained value."""
        return len(self._values)

    def take(self, topic, key, cleared, body):
        """Put a set or clear of ``topic`` in order. True if it is now the topic's
        value; False if a newer message of its run is kept (``value(topic)``)."""
        kept = self._values.get(topic)
        if kept is not None and newer_of_run(peek(kept)[1], key):
            return False
        if cleared:
            self._values.pop(topic, None)
            self._remember_cleared(topic)
        else:
            self._values[topic] = body
            if self._cleared.pop(topic, 0) is None:
                self._cleared_bytes -= len(topic) + _ENTRY_BYTES
        return True

    def value(self, topic):
        """The body every worker must hold for ``topic`` (one that clears it if none)."""
        body = self._values.get(topic)
        return _clear_body(topic) if body is None else body

    def topics(self):
        """The topics with a value (a new list): what a worker that starts with
        nothing needs."""
        return list(self._values)

    def known(self):
        """The topics with a value and those cleared lately (a new list): what a worker
        that read SQLite back needs to agree."""
        return [*self._values, *self._cleared]

    def _remember_cleared(self, topic):
        cleared = self._cleared
        if cleared.pop(topic, 0) is None:
            self._cleared_bytes -= len(topic) + _ENTRY_BYTES
        cleared[topic] = None
        self._cleared_bytes += len(topic) + _ENTRY_BYTES
        while self._cleared_bytes > self._max_cleared_bytes:
            oldest = next(iter(cleared))
            del cleared[oldest]
            self._cleared_bytes -= len(oldest) + _ENTRY_BYTES
            self._metrics.tree_retained_clears_forgotten += 1
