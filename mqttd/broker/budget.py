"""Partly read packets across all connections: one byte budget and one deadline.

A client that sends the start of a packet and then nothing makes us hold that start
for as long as its socket stays open: 100 connections stalled in the middle of a
900 kB PUBLISH took the broker from 85 to 164 MB, for good with keepalive 0. Two bounds end that:

* ``max_partial_bytes``: the packets being read, all connections together, may come to
  at most this many bytes. A packet counts at its whole size from the moment its header
  is read (its start is what the parser buffers up to that size), so the bound holds
  for what they can come to, not only for what has arrived. A packet that does not fit
  closes its own connection, the newest offender; the packets already being read finish.
* ``packet_timeout``: a packet must be complete this many seconds after its first byte
  arrived, or its connection is closed ("packet timeout"), whatever its keepalive.

Connections report only when their unfinished packet changes (``hold``): a read that
completes whole packets and leaves nothing over, the common case, costs nothing here.
"""
from mqttd.broker.deadlines import Deadlines

__all__ = ["PartialInput"]


class PartialInput:
    """The unfinished packets of a broker's connections.

    A connection is anything with ``packet_overdue()``, called once its packet is late;
    it returns True if it closed for it (counted in ``timed_out``), or renews the
    deadline with ``renew`` if the silence is the broker's (it stopped reading).
    Refusals and timeouts count into ``metrics`` (``mqtt_packets_*``).
    """

    __slots__ = ("budget", "total", "_metrics", "_deadlines")

    def __init__(self, clock, budget, timeout, metrics):
        self.budget = budget
        self.total = 0  # bytes the unfinished packets of all connections may come to
        self._metrics = metrics
        self._deadlines = Deadlines(clock, timeout, self._overdue)

    def hold(self, connection, before, after, completed):
        """``connection``'s unfinished packet went from ``before`` to ``after`` bytes
        (``Parser.partial_size``) in a read that ``completed`` packets or not.

        False if ``after`` does not fit the budget: nothing of it is counted, and the
        caller closes the connection (and later ``release``s ``before``).
        """
        if after > before and self.total - before + after > self.budget:
            self._metrics.mqtt_packets_over_budget += 1
            return False
        self.total += after - before
        if not after:
            self._deadlines.discard(connection)
        elif completed or not before:
            self._deadlines.add(connection)  # a new packet began: its own deadline
        return True

    def release(self, connection, held):
        """``connection`` is gone with ``held`` bytes of an unfinished packet."""
        self.total -= held
        self._deadlines.discard(connection)

    def renew(self, connection):
        """Start ``connection``'s deadline again: we were not reading it."""
        self._deadlines.add(connection)

    def _overdue(self, connection):
        if connection.packet_overdue():
            self._metrics.mqtt_packets_timed_out += 1
