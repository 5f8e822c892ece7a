"""Subscription interest shared between the workers of the tree: which topic filters each
worker has subscribers for, so a publish crosses only to the workers that want it.

Three pieces, one per place:

* ``AnnouncingTrie``, a worker's own subscription trie (it replaces ``Broker.trie``):
  the broker's trie, plus a count of subscribers per filter, so the worker tells the
  master only when a filter gains its first subscriber or loses its last one, never once
  per SUBSCRIBE of a filter it already has (10,000 devices subscribing to one command
  filter cost one announcement, not 10,000).
* ``InterestTable``, the master's: each worker slot's set of filters, changed by what the
  worker announces, dropped when the worker dies, re-sent whole to a worker that starts.
* ``RemoteInterest``, a worker's view of every other worker's filters, matched on each
  routed publish. It keeps them in the broker's own ``SubscriptionTrie`` with the slots as
  subscribers, so a filter matches a topic across workers exactly as it does locally,
  ``$`` rule included [MQTT-4.7.2-1]; empty, its ``match`` is one integer test.

On the channel an announcement is a JSON "interest" message:
``{"reset": bool, "add": [filter, ...], "remove": [filter, ...]}`` (the master adds
``"slot"`` when it passes one on). ``reset`` replaces everything known of that slot:
a snapshot, cut into messages of a bounded size (``snapshot``).
"""
from mqttd.broker.topics import SubscriptionTrie

__all__ = ["KIND", "AnnouncingTrie", "InterestTable", "MalformedInterest", "RemoteInterest",
           "parse", "snapshot"]

KIND = "interest"
_SNAPSHOT_BYTES = 1 << 20  # per message: well under the channel's 4 MiB of JSON
_JSON_BYTES_PER_CHAR = 12  # the most a character costs in JSON (an escaped surrogate pair)


class MalformedInterest(ValueError):
    """An interest message that is not one (from a broken peer)."""


def snapshot(filters, **extra):
    """The messages that tell a peer the whole of ``filters``: the first resets, the
    rest add; each at most ~1 MiB of JSON. ``extra`` goes into each (the master's slot)."""
    messages = []
    chunk, size = [], 0
    for topic_filter in filters:
        cost = (len(topic_filter) + 3) * _JSON_BYTES_PER_CHAR
        if chunk and size + cost > _SNAPSHOT_BYTES:
            messages.append(chunk)
            chunk, size = [], 0
        chunk.append(topic_filter)
        size += cost
    if chunk or not messages:
        messages.append(chunk)
    return [dict(extra, reset=index == 0, add=chunk, remove=[])
            for index, chunk in enumerate(messages)]


def _filters(payload, key):
    value = payload.get(key, [])
    if not isinstance(value, list) or not all(isinstance(f, str) and f for f in value):
        raise MalformedInterest(f"interest: {key!r} is not a list of topic filters")
    return value


def parse(payload):
    """(reset, add, remove) of an interest message; MalformedInterest if it is not one."""
    reset = payload.get("reset", False)
    if not isinstance(reset, bool):
        raise MalformedInterest("interest: 'reset' is not true or false")
    return reset, _filters(payload, "add"), _filters(payload, "remove")


class AnnouncingTrie(SubscriptionTrie):
    """The broker's subscription trie that calls ``on_change(filter, True)`` when a filter
    gains its first subscriber and ``on_change(filter, False)`` when it loses its last.

    ``match`` is the broker's own, untouched: this costs only on (un)subscribe.
    """

    __slots__ = ("_counts", "on_change")

    def __init__(self, on_change=None):
        super().__init__()
        self._counts = {}  # filter -> its subscribers here
        self.on_change = on_change

    def subscribe(self, topic_filter, subscriber, qos):
        new = super().subscribe(topic_filter, subscriber, qos)
        if new:
            counts = self._counts
            count = counts.get(topic_filter, 0)
            counts[topic_filter] = count + 1
            if not count and self.on_change is not None:
                self.on_change(topic_filter, True)
        return new

    def unsubscribe(self, topic_filter, subscriber):
        existed = super().unsubscribe(topic_filter, subscriber)
        if existed:
            counts = self._counts
            count = counts[topic_filter] - 1
            if count:
                counts[topic_filter] = count
            else:
                del counts[topic_filter]
                if self.on_change is not None:
                    self.on_change(topic_filter, False)
        return existed

    def filters(self):
        """Every filter with a subscriber here (a new list)."""
        return list(self._counts)


class InterestTable:
    """Each slot's set of filters, as its worker announced them."""

    def __init__(self):
        self._slots = {}  # slot -> set of filters

    def apply(self, slot, payload):
        """Apply one interest message of ``slot``; return (reset, added, removed): what
        changed, to pass on. MalformedInterest (nothing changed) if it is not one."""
        reset, add, remove = parse(payload)
        if reset:
            self.drop(slot)
        known = self._slots.setdefault(slot, set())
        added = [f for f in dict.fromkeys(add) if f not in known]
        for topic_filter in added:
            known.add(topic_filter)
            self._added(slot, topic_filter)
        removed = [f for f in dict.fromkeys(remove) if f in known]
        for topic_filter in removed:
            known.discard(topic_filter)
            self._removed(slot, topic_filter)
        if not known:
            del self._slots[slot]
        return reset, added, removed

    def drop(self, slot):
        """Forget every filter of ``slot`` (its worker is gone); return how many."""
        known = self._slots.pop(slot, ())
        for topic_filter in known:
            self._removed(slot, topic_filter)
        return len(known)

    def filters(self, slot):
        """The filters of ``slot`` (a new list, in no particular order)."""
        return list(self._slots.get(slot, ()))

    def slots(self):
        return sorted(self._slots)

    def _added(self, slot, topic_filter):
        pass

    def _removed(self, slot, topic_filter):
        pass


class RemoteInterest(InterestTable):
    """The other workers' filters, matched against the topics this worker routes."""

    def __init__(self):
        super().__init__()
        self._trie = SubscriptionTrie()

    def __len__(self):
        """(filter, slot) pairs known: 0 means no publish crosses."""
        return len(self._trie)

    def match(self, topic):
        """The slots with a filter matching ``topic`` (a dict keyed by slot; empty: none)."""
        return self._trie.match(topic)

    def _added(self, slot, topic_filter):
        self._trie.subscribe(topic_filter, slot, 0)

    def _removed(self, slot, topic_filter):
        self._trie.unsubscribe(topic_filter, slot)
