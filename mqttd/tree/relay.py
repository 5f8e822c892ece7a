"""The master's part of cross-worker delivery: interest passed on, publishes relayed.

* Interest: each worker's announcements (``mqttd.tree.interest``) change its set in an
  ``InterestTable`` and go on to every other worker; a worker that dies has its set
  dropped (the others are told), and one that starts is told every other worker's set.
* Publishes: a FORWARD frame from a worker names the slots that want it; the master
  writes the same body, unread, to each of them with the origin's slot instead. One
  channel per worker, read and written in order: a FIFO from publisher to subscriber.
* Retained: the master is the sequencer. It keeps the newest body of each retained
  topic (``RetainedOrder``), in the order it reads retained sets and clears from all
  the workers, and sends each change to EVERY worker, the one it came from too
  (RETAINED alone: stored, not delivered again there), which stores it over whatever
  it holds. A worker's own value, applied as it routed the message, is provisional
  until that echo; so two workers that set one topic within a trip of each other both
  end with the value the master read last, where each used to keep the other's. No
  sequence number is needed: each channel is a FIFO the master writes in the order it
  decides, and a value owed to a full channel is sent as the master's value at that
  moment, never an older one. (Ordering by the ingest's commit order instead would
  need the commit's rank carried back in every answer and in each Message, and an
  external ``webhook.url`` has none.) Within one broker run the key still orders
  (``newer_of_run``, as SQLite's ``retained`` table and a worker's store do): an older
  message of a run whose newer one the master holds is delivered (DELIVER alone) and
  not retained, and its origin is sent the value kept. Only retained traffic pays for
  the echo.
* Start: a worker that (re)starts with nothing kept (``retained_at_start``: its
  messages are not in this host's SQLite, webhook.url) gets the whole set first. A
  worker that keeps them reads them back from SQLite, holds what is relayed meanwhile
  (``Crossing(holding=True)``), and says "loaded" when done: then the master sends its
  set and the clears it remembers over it, because SQLite keeps the value committed
  last, which for two close sets may not be the one the master ordered last (and what
  the worker could not hold while loading is made good). A store-only retained frame
  (``RETAINED`` without ``DELIVER``) changes the retained store and delivers nothing.

Bounded: one ``ForwardBudget`` per worker drops what a stalled worker's channel cannot
take. Retained values are owed by topic instead (at most one per topic, sent newest when
it drains), and interest changes that do not fit are replaced by the whole set once it
drains: what the master holds for a stalled worker never grows past its bound plus
what it keeps anyway (the sets, the retained bodies, 1 MiB of cleared topics).
"""
from twisted.logger import Logger

from mqttd.tree.budget import ForwardBudget
from mqttd.tree.interest import KIND, InterestTable, MalformedInterest, snapshot
from mqttd.tree.relay_wire import DELIVER, RETAINED, MalformedBody, peek
from mqttd.tree.retained_order import RetainedOrder

__all__ = ["Relay"]

log = Logger()

MASTER = 0
"""The origin slot of what the master sends of its own (retained values owed)."""


class _Worker:
    """One live worker's channel, its budget, and what the master owes it."""

    __slots__ = ("channel", "budget", "owed", "stale")

    def __init__(self, channel, budget):
        self.channel = channel
        self.budget = budget
        self.owed = {}  # retained topics whose newest value it still has to get
        self.stale = False  # interest changes not sent: every set goes when drained


class Relay:
    """Interest and publishes between the workers, ``max_bytes`` of backlog each."""

    def __init__(self, metrics, max_bytes, retained_at_start=True):
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._retained_at_start = retained_at_start
        self._workers = {}  # slot -> _Worker
        self.interest = InterestTable()
        self._slots_told = set()  # slots whose interest anyone was ever told
        self._retained = RetainedOrder(metrics)

    @property
    def retained_topics(self):
        return len(self._retained)

    # -- workers come and go ------------------------------------------------------------

    def attach(self, slot, channel):
        """A worker (re)starts on ``channel``: it learns the other workers' interest and
        the retained set, before anything else the master sends it."""
        if self.interest.filters(slot):
            self._gone(slot)  # its previous life's, if its death was not seen yet
        worker = self._workers[slot] = _Worker(
            channel, ForwardBudget(self._max_bytes, self._metrics, f"worker {slot}"))
        self._tell_all(slot, worker)
        if self._retained_at_start:
            worker.owed = dict.fromkeys(self._retained.topics())
            self._pay(worker)

    def detach(self, slot):
        """``slot``'s worker is gone: forget its channel and drop its interest."""
        self._workers.pop(slot, None)
        self._gone(slot)

    def _gone(self, slot):
        dropped = self.interest.drop(slot)
        if dropped:
            log.info("worker {slot} gone: its {count} subscription filters are no longer "
                     "forwarded to", slot=slot, count=dropped)
            self._pass_on(slot, {"slot": slot, "reset": True, "add": [], "remove": []})

    def loaded(self, slot):
        """``slot``'s worker has read its retained set back from SQLite: the master's
        values and clears go over it (not with ``retained_at_start``: it got them first)."""
        worker = self._workers.get(slot)
        if worker is None or self._retained_at_start:
            return
        owed = worker.owed
        for topic in self._retained.known():
            owed.setdefault(topic, None)
        self._pay(worker)

    def drained(self, slot, channel):
        worker = self._workers.get(slot)
        if worker is None or worker.channel is not channel:
            return  # an earlier life's channel
        if worker.stale:
            worker.stale = False
            self._tell_all(slot, worker)
        self._pay(worker)

    # -- interest -----------------------------------------------------------------------

    def interest_from(self, slot, payload):
        """An interest message of ``slot``'s worker: kept, and passed on to the others."""
        try:
            reset, added, removed = self.interest.apply(slot, payload)
        except MalformedInterest as e:
            log.warn("worker {slot}: {error}", slot=slot, error=e)
            return
        if reset or added or removed:
            self._pass_on(slot, {"slot": slot, "reset": reset, "add": added,
                                 "remove": removed})

    def _pass_on(self, origin, message):
        self._slots_told.add(origin)
        for slot, worker in self._workers.items():
            if slot == origin or worker.stale:
                continue
            if worker.channel.backlog > self._max_bytes:
                worker.stale = True  # told everything once it drains
                continue
            worker.channel.send(KIND, message)

    def _tell_all(self, slot, worker):
        """Every other slot's interest, each as a reset (an empty one for a slot that
        has none now, in case ``worker`` was told some before)."""
        for other in sorted(self._slots_told | set(self.interest.slots())):
            if other != slot:
                for message in snapshot(self.interest.filters(other), slot=other):
                    worker.channel.send(KIND, message)

    # -- publishes ----------------------------------------------------------------------

    def forward_from(self, origin, flags, slots, body):
        """A FORWARD frame of ``origin``'s worker: relayed to the slots it names, or to
        every worker if it is retained (``_retain``)."""
        qos = body[0] if body else 0
        if flags & RETAINED:
            self._retain(origin, flags, body, qos)
            return
        workers = self._workers
        for slot in slots:
            worker = workers.get(slot)
            if worker is None or slot == origin:
                continue  # gone (its interest is being dropped), or a confused origin
            if worker.budget.fits(worker.channel, len(body), qos):
                self._send(worker, flags, origin, body)
            else:
                worker.budget.dropped(qos)

    def _retain(self, origin, flags, body, qos):
        """A retained set or clear: in the master's order, to every worker."""
        try:
            topic, key, cleared = peek(body)
        except MalformedBody as e:
            log.warn("worker {slot}: forwarded message dropped: {error}", slot=origin,
                     error=e)
            return
        if self._retained.take(topic, key, cleared, body):
            value, others = body, flags
        else:  # a newer message of its run is kept: delivered, not retained
            value, others = self._retained.value(topic), flags & DELIVER
        for slot, worker in self._workers.items():
            if slot == origin:
                self._retained_to(worker, RETAINED, origin, topic, value, qos)
            elif others & RETAINED:
                self._retained_to(worker, others, origin, topic, body, qos)
            elif others:
                if worker.budget.fits(worker.channel, len(body), qos):
                    self._send(worker, others, origin, body)
                else:
                    worker.budget.dropped(qos)

    def _retained_to(self, worker, flags, origin, topic, body, qos):
        """A retained value to ``worker`` now, or owed by topic when its channel is full
        or already owes some (then a delivery it carried is dropped, and counted)."""
        if worker.owed or not worker.budget.fits(worker.channel, len(body), 1):
            worker.owed.pop(topic, None)
            worker.owed[topic] = None
            if flags & DELIVER:
                worker.budget.dropped(qos)
        else:
            self._send(worker, flags, origin, body)

    def _send(self, worker, flags, origin, body):
        if worker.channel.forward(flags, (origin,), body):
            self._metrics.tree_forwarded += 1

    def _pay(self, worker):
        """Send ``worker`` the retained values owed to it while its channel takes them."""
        owed = worker.owed
        while owed and worker.channel.writable:
            topic = next(iter(owed))
            body = self._retained.value(topic)
            if not worker.budget.fits(worker.channel, len(body), 1):
                return
            del owed[topic]
            self._send(worker, RETAINED, MASTER, body)
