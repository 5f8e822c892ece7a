"""Judged connections that no worker can take yet, and the tree's start-up wait.

While the tree starts, a client id waits (up to ``broker.idle_timeout``) for the worker
its hash names, so it lands at home; later, a connection waits only while no worker is
up at all. ``route(connect)`` asks ``Balancer.route`` for the worker now; a connection
that gets none waits here, and goes out as soon as a worker comes up (``dispatch``) or,
past its wait, to whichever is up, else CONNACK 3 (``refuse``, with the reason the
trace and the log give: ``NO_WORKER``, or ``STOPPING`` when the master stops).
"""
import attrs
from twisted.logger import Logger

from mqttd.tree.connect_outcomes import NO_WORKER, STOPPING

__all__ = ["Let", "WaitingRoom"]

log = Logger()


class WaitingRoom:
    """``hand_off(pending, connect, let, slot)`` sends one to worker ``slot``;
    ``refuse(pending, connect, let, reason)`` answers CONNACK 3 and closes it."""

    def __init__(self, reactor, balancer, workers, wait, hand_off, refuse):
        self._reactor = reactor
        self._balancer = balancer
        self._workers = workers
        self._wait = wait  # broker.idle_timeout
        self._hand_off = hand_off
        self._refuse = refuse
        self._starting = True  # until every worker has come up once
        self._start_timer = None
        self._waiting = {}  # PendingConnect -> (Connect, let, timer)

    def start(self):
        self._start_timer = self._reactor.callLater(self._wait, self.started)

    def route(self, connect, waited=False):
        """The worker to hand ``connect`` to now, or None (``Balancer.route``)."""
        return self._balancer.route(connect.client_id, connect.clean_session,
                                    self._starting, waited)

    def enter(self, pending, connect, let):
        """Hand it to its worker now, or wait for one."""
        slot = self.route(connect)
        if slot is not None:
            self._hand_off(pending, connect, let, slot)
            return
        timer = self._reactor.callLater(self._wait, self._waited, pending)
        self._waiting[pending] = (connect, let, timer)

    def _waited(self, pending):
        connect, let, _ = self._waiting.pop(pending)
        slot = self.route(connect, waited=True)
        if slot is None:
            self._refuse(pending, connect, let, NO_WORKER)
        else:
            self._hand_off(pending, connect, let, slot)

    def dispatch(self):
        """A worker came up: send it (and the others) whoever can go now."""
        for pending, (connect, let, timer) in list(self._waiting.items()):
            slot = self.route(connect)
            if slot is not None:
                del self._waiting[pending]
                timer.cancel()
                self._hand_off(pending, connect, let, slot)

    def started(self):
        """Every worker has come up once, or the wait for them is over."""
        if not self._starting:
            return
        self._starting = False
        up = len(self._balancer.live)
        if up < self._workers:
            log.warn("mqttd tree: {up} of {workers} workers up after broker.idle_timeout;"
                     " the others' clients go to those meanwhile", up=up,
                     workers=self._workers)
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self.dispatch()

    def stop(self):
        """The master stops: whoever waits gets CONNACK 3."""
        waiting, self._waiting = self._waiting, {}
        for pending, (connect, let, timer) in waiting.items():
            timer.cancel()
            self._refuse(pending, connect, let, STOPPING)
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()


@attrs.frozen
class Let:
    """What the gate said of a connection it let in: the client id it has (``generated``
    here for an empty one), its account and the gate's ticket."""

    client_id: str
    account: str | None
    ticket: object
    generated: bool

