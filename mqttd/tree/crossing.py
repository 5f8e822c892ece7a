"""A worker's end of cross-worker delivery: what it announces, forwards and receives.

* Interest: the broker's trie becomes an ``AnnouncingTrie``; a filter's first subscriber
  and its last one are announced to the master, and the whole set when the channel
  opens (a worker that restarts). What the master passes on of the other workers' sets
  is ``remote``.
* Forwarding: ``Broker.route`` hands over each STORED message it routes while ``wanted``
  (some other worker has a filter) or when it is retained; ``forward`` sends it only if
  some other worker's filter matches, or to every worker if it is retained. One channel,
  written in routing order, and the master relays in the order it reads: messages of one
  publisher reach another worker in the order they were committed.
* Receiving: a message from another worker is delivered by ``Broker.route(message,
  False)``, exactly as a local route (min(QoS, granted), retain 0) and not forwarded
  again or stored again (it is committed already).
  While the broker reads back what it kept (``holding``, until ``loaded``) what comes is
  held, in order: a retained value relayed meanwhile is newer than the one it reads;
  and once loaded it tells the master, which sends its retained values over them.
* Retained: the master orders every worker's retained sets and clears and sends each
  to every worker, this one's own back too (``mqttd.tree.relay``). What this worker
  applies as it routes its own is provisional; what the master sends is stored over
  whatever is here, so all workers end with the value the master read last.
* Acks of retained sets: the PUBACK / PUBREC of a retained QoS 1/2 publish waits for
  the master's echo of it (``hold_ack``). The master writes a retained value to every
  worker's channel before it echoes it to the origin, and hands a socket off over that
  same channel, after: a client that connects once the ack came is adopted after the
  new value on whichever worker, and reads it (not the one it replaced). An echo that
  does not come (the master gone, a channel full and its values owed) is waited for at
  most ``ECHO_WAIT`` seconds: the message is committed, only the window reopens.

Bounded: ``ForwardBudget`` drops what the channel to the master cannot take; retained
values owed are kept by topic (the newest only) and sent when it drains; interest
changes that do not fit are not sent, and the whole set goes once it drains.
"""
from twisted.logger import Logger

from mqttd.tree.budget import ForwardBudget
from mqttd.tree.echo_waits import EchoWaits
from mqttd.tree.interest import KIND, AnnouncingTrie, MalformedInterest, RemoteInterest, snapshot
from mqttd.tree.relay import MASTER
from mqttd.tree.relay_wire import DELIVER, RETAINED, MalformedBody, decode, encode

__all__ = ["Crossing"]

log = Logger()

class Crossing:
    """Cross-worker delivery for ``broker`` (this worker is ``slot``).

    Installs itself: ``broker.trie`` (empty: before any subscription) and
    ``broker.elsewhere``. ``open(channel)`` once the master's channel is up; the channel
    calls ``received``, ``drained`` and, for "interest" messages, ``interest``.
    """

    __slots__ = ("wanted", "remote", "_broker", "_slot", "_metrics", "_budget", "_local",
                 "_channel", "_stale", "_owed", "_held", "_held_bytes", "_say_loaded",
                 "_echoes")

    def __init__(self, broker, slot, metrics, max_bytes, holding=False):
        if len(broker.trie):
            raise ValueError("Crossing must be installed before anything is subscribed")
        self.wanted = False  # some other worker has a filter: read per routed message
        self._broker = broker
        self._slot = slot
        self._metrics = metrics
        self._budget = ForwardBudget(max_bytes, metrics, "the master")
        self.remote = RemoteInterest()
        self._local = AnnouncingTrie(self._changed)
        self._channel = None
        self._stale = False  # interest changes not sent: the whole set goes when drained
        self._owed = {}  # topic -> Message: retained values of ours not sent yet
        # What other workers sent while the broker loads (``holding``), and its bytes.
        self._held = [] if holding else None
        self._held_bytes = 0
        self._say_loaded = False  # loaded before the channel opened: said when it does
        self._echoes = EchoWaits(broker.clock, slot)  # acks waiting for the master's echo
        broker.trie = self._local
        broker.elsewhere = self

    # -- the channel to the master ------------------------------------------------------

    def open(self, channel):
        self._channel = channel
        self._announce_all()
        if self._say_loaded:
            self._say_loaded = False
            channel.send("loaded", {})

    def drained(self):
        """The channel's buffer emptied: send what waited for it."""
        if self._stale:
            self._stale = False
            self._announce_all()
        self._send_owed()

    # -- interest -----------------------------------------------------------------------

    def _announce_all(self):
        for payload in snapshot(self._local.filters()):
            self._channel.send(KIND, payload)

    def _changed(self, topic_filter, present):
        channel = self._channel
        if channel is None or self._stale:
            return  # the whole set goes when the channel opens or drains
        if channel.backlog > self._budget.max_bytes:
            self._stale = True
            return
        channel.send(KIND, {"add": [topic_filter]} if present else {"remove": [topic_filter]})

    def interest(self, payload):
        """Another worker's interest, passed on by the master."""
        slot = payload.get("slot")
        if not isinstance(slot, int) or isinstance(slot, bool) or slot == self._slot:
            log.warn("worker {slot}: interest message for slot {other!r} ignored",
                     slot=self._slot, other=slot)
            return
        try:
            self.remote.apply(slot, payload)
        except MalformedInterest as e:
            log.warn("worker {slot}: {error}", slot=self._slot, error=e)
        self.wanted = bool(len(self.remote))

    # -- publishes ----------------------------------------------------------------------

    def forward(self, message):
        """A message this worker stored and routed: to the other workers that want it."""
        targets = self.remote.match(message.topic) if self.wanted else None
        retain = message.retain
        if not (targets or retain):
            return
        channel = self._channel
        if channel is None or not channel.writable:
            return  # the master is gone: this worker is stopping
        body = encode(message)
        budget = self._budget
        if retain:
            if self._owed or not budget.fits(channel, len(body), 1):
                self._owe(message)
                if targets:
                    budget.dropped(message.qos)
                return
            channel.forward(DELIVER | RETAINED, (), body)
        elif budget.fits(channel, len(body), message.qos):
            channel.forward(DELIVER, tuple(targets), body)
        else:
            budget.dropped(message.qos)
            return
        self._metrics.tree_forwarded += 1

    def _owe(self, message):
        owed = self._owed
        owed.pop(message.topic, None)  # the newest goes last: after what was owed before
        owed[message.topic] = message

    def _send_owed(self):
        owed = self._owed
        channel = self._channel
        while owed and channel.writable:
            topic = next(iter(owed))
            body = encode(owed[topic])
            if not self._budget.fits(channel, len(body), 1):
                return
            del owed[topic]
            channel.forward(RETAINED, (), body)
            self._metrics.tree_forwarded += 1

    def loaded(self):
        """The broker has read back what it kept (retained set, sessions): what came
        meanwhile goes now, in order, after it (newer than what it read); and the master
        is told, to send its retained values (its order, not SQLite's commit order)."""
        held, self._held = self._held, None
        for flags, slots, body in held or ():
            self._apply(flags, slots, body)
        if self._channel is None:
            self._say_loaded = True
        else:
            self._channel.send("loaded", {})

    def received(self, flags, slots, body):
        """A message another worker stored, from the master: held while the broker
        loads (at most ``max_bytes``; past that dropped, counted), else applied."""
        held = self._held
        if held is None:
            self._apply(flags, slots, body)
        elif self._held_bytes + len(body) <= self._budget.max_bytes:
            held.append((flags, slots, body))
            self._held_bytes += len(body)
        else:
            self._budget.dropped(body[0] if body else 0)

    def _apply(self, flags, slots, body):
        try:
            message = decode(body)
        except MalformedBody as e:
            log.warn("worker {slot}: forwarded message dropped: {error}", slot=self._slot,
                     error=e)
            return
        self._metrics.tree_forward_received += 1
        if flags & RETAINED:
            self._retain(message)
            if self._echoes and message.topic in self._echoes and (
                    not slots or slots[0] in (self._slot, MASTER)):
                self._echoes.echoed(message.topic, message.key)
        if flags & DELIVER:
            if message.retain and not flags & RETAINED:
                # The master keeps a newer message of its run for the topic: not retained.
                message = message._replace(retain=False)
            self._broker.route(message, False)  # its retained store has it already

    def _retain(self, message):
        """Store the master's value of a retained topic over whatever is here: this
        worker's own provisional one, or a newer key of a run (the master has ordered
        them; the store's key rule alone would keep it)."""
        retained = self._broker.retained
        topic = message.topic
        kept = retained.get(topic)
        if kept is not None and kept.key == message.key:
            return  # its own value, echoed back: the common case
        retained.clear(topic)
        if message.payload:
            retained.set(topic, message)

    # -- acks of retained sets ------------------------------------------------------------

    def hold_ack(self, message, release, *args):
        """Call ``release(*args)`` once the master has ordered the retained ``message``
        (``EchoWaits``). False, and nothing is called, if no echo can come (no channel)."""
        channel = self._channel
        if channel is None or not channel.writable:
            return False
        self._echoes.hold(message, release, args)
        return True

    def lost(self):
        """The master's channel is gone: no echo will come; every waiting ack goes."""
        self._echoes.release_all()
