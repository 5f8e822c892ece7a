"""The one timer of a connection: Liveness.

A connection has one deadline at a time: its CONNECT must arrive (and be admitted)
within ``idle_timeout``, then the client must be heard from within 1.5 x its keepalive
[MQTT-3.1.2-24], and a connection mqttd closes must finish closing within a grace
period. One DelayedCall covers all three, so 10,000 idle connections hold 10,000 timers,
not 30,000.

Timers are lazy: a read only stores its time (``saw``); the keepalive timer checks it
when it fires and re-arms for the remaining time, instead of being reset per read. The
same time is what the connection's publishes carry as ``received_at`` (one clock call
per read, not per message).
"""

__all__ = ["Liveness"]


class Liveness:
    """``expired()`` (given when a deadline is armed) is called when it passes.

    ``reading`` is the connection's ReadPause: while we are the ones not reading (a full
    window or sink), the client's silence is ours and keepalive waits. ``expired`` lives
    only in the armed DelayedCall, which ``cancel`` drops: a closed connection holds no
    cycle through its timer and goes by reference counting.
    """

    __slots__ = ("_clock", "_reading", "_call", "_keepalive", "last_seen")

    def __init__(self, clock, reading):
        self._clock = clock
        self._reading = reading
        self._call = None
        self._keepalive = 0.0  # 0 until CONNACK: the connect deadline runs
        self.last_seen = 0.0  # the time of the latest read (see the module docstring)

    def saw(self):
        """The client was heard from (or we read from it again): keepalive counts from now."""
        self.last_seen = self._clock.seconds()

    def start(self, timeout, expired):
        """The deadline for CONNECT and its admission."""
        self._call = self._clock.callLater(timeout, self._fire, expired)

    def keepalive(self, keepalive, max_keepalive, expired):
        """Connected with the CONNECT's ``keepalive``: expire after 1.5 times that without
        a read [MQTT-3.1.2-24]. None (0) or more than ``max_keepalive`` gets the server's
        own bound on silence."""
        if not keepalive or keepalive > max_keepalive:
            keepalive = max_keepalive
        self.cancel()
        self.saw()
        self._keepalive = interval = keepalive * 1.5
        self._call = self._clock.callLater(interval, self._fire, expired)

    def grace(self, seconds, abort):
        """Closing: ``abort()`` if the close has not finished within ``seconds``."""
        self.cancel()
        self._call = self._clock.callLater(seconds, abort)

    def cancel(self):
        call = self._call
        if call is not None:
            if call.active():
                call.cancel()
            self._call = None

    def _fire(self, expired):
        self._call = None
        interval = self._keepalive
        if not interval:
            expired()
            return
        if self._reading.silence_is_ours():
            # We stopped reading (the store is behind): the client's packets, its
            # PINGREQs too, wait unread in the socket. Closing would also publish a
            # false will.
            self._call = self._clock.callLater(interval, self._fire, expired)
            return
        idle = self._clock.seconds() - self.last_seen
        if idle >= interval:
            expired()
        else:
            self._call = self._clock.callLater(interval - idle, self._fire, expired)
