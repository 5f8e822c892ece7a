"""Which subscribers want a published topic: the subscription trie.

Every PUBLISH a worker receives is matched here, so ``match`` is the hot path.  The
structure is split in two because real subscriptions are lopsided (mostly exact device
topics, a few wildcard filters):

* filters without wildcards live in one dict keyed by the filter string, so an exact hit
  costs one hash lookup, whatever the number of subscriptions;
* filters with ``+`` or ``#`` live in a trie keyed by topic level, walked level by level,
  so the cost grows with topic depth and the number of matching branches only.

With nothing subscribed ``match`` returns after one integer test: ingestion-only traffic
pays nothing.  Filters and topics are assumed already validated by
``mqttd.codec.validate``; nothing here re-checks them.  No method recurses, so a filter
or topic of thousands of levels cannot exhaust the stack.
"""

__all__ = ["SubscriptionTrie"]


class _Node:
    """One topic level of a wildcard filter.

    ``children`` maps a literal level to the next node, ``plus`` is the ``+`` branch,
    ``subs`` holds subscriptions whose filter ends here and ``hsubs`` those whose filter
    ends here followed by ``/#`` (``#`` is always last, so it needs no node of its own).
    Every slot is None when empty, which keeps idle nodes small and makes "is this node
    prunable" four identity tests.
    """

    __slots__ = ("children", "plus", "subs", "hsubs")

    def __init__(self):
        self.children = None
        self.plus = None
        self.subs = None
        self.hsubs = None

    def is_empty(self):
        return (
            self.children is None
            and self.plus is None
            and self.subs is None
            and self.hsubs is None
        )


def _merge_max(result, subs):
    """Fold ``subs`` into ``result`` keeping each subscriber's highest QoS."""
    if not result:
        result.update(subs)
        return
    get = result.get
    for sub, qos in subs.items():
        if get(sub, -1) < qos:
            result[sub] = qos


class SubscriptionTrie:
    """Subscriptions of arbitrary hashable subscribers to MQTT 3.1.1 topic filters.

    ``match`` yields each subscriber once with the maximum QoS of its overlapping
    matching subscriptions, which MQTT-3.3.5-1 allows.  ``len()`` is the number of
    (filter, subscriber) pairs.
    """

    __slots__ = ("_exact", "_root", "_count", "_wild")

    def __init__(self):
        self._exact = {}  # filter -> {subscriber: qos}
        self._root = _Node()  # wildcard filters
        self._count = 0  # all (filter, subscriber) pairs
        self._wild = 0  # pairs held in the trie

    def __len__(self):
        return self._count

    # -- mutation ---------------------------------------------------------------------

    def subscribe(self, topic_filter, subscriber, qos):
        """Add or update a subscription; True if new, False if only its QoS changed."""
        wild = "+" in topic_filter or "#" in topic_filter
        if not wild:
            subs = self._exact.get(topic_filter)
            if subs is None:
                self._exact[topic_filter] = {subscriber: qos}
                self._count += 1
                return True
        else:
            node = self._root
            levels = topic_filter.split("/")
            hashed = levels[-1] == "#"
            if hashed:
                levels.pop()
            for level in levels:
                if level == "+":
                    nxt = node.plus
                    if nxt is None:
                        nxt = node.plus = _Node()
                else:
                    children = node.children
                    if children is None:
                        children = node.children = {}
                    nxt = children.get(level)
                    if nxt is None:
                        nxt = children[level] = _Node()
                node = nxt
            if hashed:
                subs = node.hsubs
                if subs is None:
                    subs = node.hsubs = {}
            else:
                subs = node.subs
                if subs is None:
                    subs = node.subs = {}
        new = subscriber not in subs
        subs[subscriber] = qos
        if new:
            self._count += 1
            if wild:
                self._wild += 1
        return new

    def unsubscribe(self, topic_filter, subscriber):
        """Remove one subscription; True if it existed.  Emptied nodes are pruned."""
        if "+" not in topic_filter and "#" not in topic_filter:
            subs = self._exact.get(topic_filter)
            if subs is None or subscriber not in subs:
                return False
            del subs[subscriber]
            if not subs:
                del self._exact[topic_filter]
            self._count -= 1
            return True

        levels = topic_filter.split("/")
        hashed = levels[-1] == "#"
        if hashed:
            levels.pop()
        path = []  # (parent, level) pairs, to prune bottom-up
        node = self._root
        for level in levels:
            if level == "+":
                nxt = node.plus
            else:
                children = node.children
                nxt = None if children is None else children.get(level)
            if nxt is None:
                return False
            path.append((node, level))
            node = nxt
        subs = node.hsubs if hashed else node.subs
        if subs is None or subscriber not in subs:
            return False
        del subs[subscriber]
        if not subs:
            if hashed:
                node.hsubs = None
            else:
                node.subs = None
        self._count -= 1
        self._wild -= 1
        while path and node.is_empty():
            parent, level = path.pop()
            if level == "+":
                parent.plus = None
            else:
                del parent.children[level]
                if not parent.children:
                    parent.children = None
            node = parent
        return True

    def remove_subscriber(self, subscriber, filters):
        """Drop ``subscriber`` from every filter in ``filters``; return how many existed.

        The trie keeps no per-subscriber index (the session already knows its filters),
        so the caller names them.
        """
        unsubscribe = self.unsubscribe
        return sum(1 for f in filters if unsubscribe(f, subscriber))

    # -- lookup -----------------------------------------------------------------------

    def match(self, topic):
        """Return ``{subscriber: max_qos}`` for every subscription matching ``topic``.

        The dict is new on each call; the caller may keep or change it.
        """
        if not self._count:
            return {}
        exact = self._exact.get(topic)
        if not self._wild:
            return {} if exact is None else exact.copy()
        result = {} if exact is None else exact.copy()

        levels = topic.split("/")
        root = self._root
        # First level on its own: [MQTT-4.7.2-1] keeps '+' and '#' at the first level
        # away from topics starting with '$'.
        if topic[:1] == "$":
            children = root.children
            node = None if children is None else children.get(levels[0])
            if node is None:
                return result
            nodes = [node]
        else:
            if root.hsubs is not None:
                _merge_max(result, root.hsubs)
            nodes = []
            children = root.children
            if children is not None:
                node = children.get(levels[0])
                if node is not None:
                    nodes.append(node)
            if root.plus is not None:
                nodes.append(root.plus)
            if not nodes:
                return result

        for i in range(1, len(levels)):
            level = levels[i]
            nxt = []
            for node in nodes:
                if node.hsubs is not None:
                    _merge_max(result, node.hsubs)
                children = node.children
                if children is not None:
                    child = children.get(level)
                    if child is not None:
                        nxt.append(child)
                if node.plus is not None:
                    nxt.append(node.plus)
            if not nxt:
                return result
            nodes = nxt

        # Topic consumed: filters ending here match, and so do "<here>/#" filters
        # because '#' also matches the parent level ("sport/#" matches "sport").
        for node in nodes:
            if node.subs is not None:
                _merge_max(result, node.subs)
            if node.hsubs is not None:
                _merge_max(result, node.hsubs)
        return result

    # -- introspection ----------------------------------------------------------------

    def node_count(self):
        """Trie nodes plus exact-filter entries, root excluded: 0 when all is pruned."""
        count = len(self._exact)
        stack = [self._root]
        while stack:
            node = stack.pop()
            if node.children is not None:
                count += len(node.children)
                stack.extend(node.children.values())
            if node.plus is not None:
                count += 1
                stack.append(node.plus)
        return count
