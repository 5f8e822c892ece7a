"""Acks of retained sets that wait for the master's echo of them.

The PUBACK / PUBREC of a retained QoS 1/2 publish goes once the master has ordered
the set (its echo, or a newer value of the same worker run, came back), so that a
client adopted after the ack reads the new value on any worker. An echo that does not
come is waited for at most ``ECHO_WAIT`` seconds: the message is committed already.
"""
from twisted.logger import Logger

from mqttd.store.retained import BOOT_PREFIX

__all__ = ["ECHO_WAIT", "EchoWaits"]

log = Logger()

ECHO_WAIT = 3.0
"""Seconds an ack of a retained set waits for the master's echo at most."""


class _Waiter:
    """One held ack: ``release(*args)`` once ``key`` (or a later key of its run) came."""

    __slots__ = ("key", "release", "args", "timer")

    def __init__(self, key, release, args):
        self.key = key
        self.release = release
        self.args = args
        self.timer = None

    def covered_by(self, key):
        return self.key[:BOOT_PREFIX] == key[:BOOT_PREFIX] and self.key <= key

    def go(self):
        if self.timer.active():
            self.timer.cancel()
        self.release(*self.args)


class EchoWaits:
    """The held acks of one worker, by topic (``slot`` names it in the log)."""

    __slots__ = ("_clock", "_slot", "_by_topic")

    def __init__(self, clock, slot):
        self._clock = clock
        self._slot = slot
        self._by_topic = {}  # topic -> [_Waiter, ...], in hold order

    def __contains__(self, topic):
        return topic in self._by_topic

    def __bool__(self):
        return bool(self._by_topic)

    def hold(self, message, release, args):
        waiter = _Waiter(message.key, release, args)
        waiter.timer = self._clock.callLater(ECHO_WAIT, self._waited, message.topic,
                                             waiter)
        self._by_topic.setdefault(message.topic, []).append(waiter)

    def echoed(self, topic, key):
        """The master sent ``topic``'s value with ``key``: the acks of this run's sets of
        it up to ``key`` go (a later value of ours means the master read ours before)."""
        done = self._take(topic, lambda waiter: waiter.covered_by(key))
        for waiter in done:
            waiter.go()

    def release_all(self):
        """No echo will come (the master's channel is gone): every held ack goes."""
        by_topic, self._by_topic = self._by_topic, {}
        for waiters in by_topic.values():
            for waiter in waiters:
                waiter.go()

    def _waited(self, topic, waiter):
        if self._take(topic, lambda other: other is waiter):
            log.warn("worker {slot}: no echo of the retained set of {topic!r} from the "
                     "master in {seconds} s; acknowledged anyway (it is committed)",
                     slot=self._slot, topic=topic, seconds=ECHO_WAIT)
            waiter.go()

    def _take(self, topic, chosen):
        """Remove and return the waiters of ``topic`` that ``chosen`` picks."""
        waiters = self._by_topic.get(topic, ())
        done = [waiter for waiter in waiters if chosen(waiter)]
        if done:
            rest = [waiter for waiter in waiters if not chosen(waiter)]
            if rest:
                self._by_topic[topic] = rest
            else:
                del self._by_topic[topic]
        return done
