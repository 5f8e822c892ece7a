"""Retained messages, keyed by topic name, found by topic filter.

A new subscription must receive the retained message of every topic its filter matches
(MQTT-3.3.1-6), so lookups go the other way round from the subscription trie: the
*topics* are stored in a level trie and the *filter* walks it.  A literal level follows
one child, ``+`` fans out over the children of one level, ``#`` collects a subtree, so
"a/+/c" never scans retained topics outside "a/*/c".  Topics starting with '$' are not
reached by a first-level '+' or '#' [MQTT-4.7.2-1].

Messages are the broker's own objects; ``.payload`` is read, to honour "an empty
payload clears the retained message" (MQTT-3.3.1-10/11), and ``.key``, so an older
message of the same broker run never replaces a newer one (``_newer``).  Emptied nodes are pruned so
memory follows the live retained set, not its history.  No method recurses.
"""

from mqttd.store.retained import BOOT_PREFIX

__all__ = ["RetainedStore"]


def _newer(kept, key):
    """Is ``kept`` a newer key of the same broker run than ``key``? Keys of one run
    (BOOTID-COUNTER-RANDOM) count up in receive order (``Broker.make_message``)."""
    return kept[:BOOT_PREFIX] == key[:BOOT_PREFIX] and kept > key


class _Node:
    """One topic level: children by level name, and the message retained here."""

    __slots__ = ("children", "message")

    def __init__(self):
        self.children = None
        self.message = None


class RetainedStore:
    """The retained message of each topic; ``len()`` counts topics holding one."""

    __slots__ = ("_root", "_count")

    def __init__(self):
        self._root = _Node()
        self._count = 0

    def __len__(self):
        return self._count

    def set(self, topic, message):
        """Retain ``message`` for ``topic``, replacing any; an empty payload clears it.

        Unless the message retained now is of the same broker run and newer (its key,
        ``_newer``): the rule mqttd.db's ``retained`` table follows, so memory and disk
        keep the same value whatever order concurrent commits are routed in.
        """
        if not message.payload:
            old = self.get(topic)
            if old is None or not _newer(old.key, message.key):
                self.clear(topic)
            return
        node = self._root
        for level in topic.split("/"):
            children = node.children
            if children is None:
                children = node.children = {}
            nxt = children.get(level)
            if nxt is None:
                nxt = children[level] = _Node()
            node = nxt
        old = node.message
        if old is None:
            self._count += 1
        elif _newer(old.key, message.key):
            return
        node.message = message

    def clear(self, topic):
        """Forget the retained message of ``topic``; True if there was one."""
        path = []
        node = self._root
        for level in topic.split("/"):
            children = node.children
            nxt = None if children is None else children.get(level)
            if nxt is None:
                return False
            path.append((node, level))
            node = nxt
        if node.message is None:
            return False
        node.message = None
        self._count -= 1
        while path and node.children is None and node.message is None:
            parent, level = path.pop()
            del parent.children[level]
            if not parent.children:
                parent.children = None
            node = parent
        return True

    def get(self, topic):
        """The message retained for exactly ``topic``, or None."""
        node = self._root
        for level in topic.split("/"):
            children = node.children
            node = None if children is None else children.get(level)
            if node is None:
                return None
        return node.message

    def match(self, topic_filter):
        """Messages retained on topics matching ``topic_filter`` (a new list)."""
        out = []
        if not self._count:
            return out
        nodes = [self._root]
        first = True
        for level in topic_filter.split("/"):
            if level == "#":
                # '#' matches the parent level too: "sport/#" yields "sport" itself.
                stack = []
                for node in nodes:
                    if node.message is not None:
                        out.append(node.message)
                    children = node.children
                    if children is not None:
                        if first:
                            stack.extend(
                                c for k, c in children.items() if k[:1] != "$"
                            )
                        else:
                            stack.extend(children.values())
                while stack:
                    node = stack.pop()
                    if node.message is not None:
                        out.append(node.message)
                    if node.children is not None:
                        stack.extend(node.children.values())
                return out
            nxt = []
            if level == "+":
                for node in nodes:
                    children = node.children
                    if children is not None:
                        if first:
                            nxt.extend(c for k, c in children.items() if k[:1] != "$")
                        else:
                            nxt.extend(children.values())
            else:
                for node in nodes:
                    children = node.children
                    if children is not None:
                        child = children.get(level)
                        if child is not None:
                            nxt.append(child)
            if not nxt:
                return out
            nodes = nxt
            first = False
        for node in nodes:
            if node.message is not None:
                out.append(node.message)
        return out

    def items(self):
        """Yield ``(topic, message)`` for every retained message, e.g. to persist them.

        Paths are kept as (level, parent) cons cells so a very deep topic costs its
        depth once, not once per ancestor.
        """
        stack = [(None, self._root)]
        while stack:
            path, node = stack.pop()
            if node.message is not None:
                levels = []
                cell = path
                while cell is not None:
                    level, cell = cell
                    levels.append(level)
                levels.reverse()
                yield "/".join(levels), node.message
            if node.children is not None:
                for level, child in node.children.items():
                    stack.append(((level, path), child))

    def node_count(self):
        """Trie nodes, root excluded: 0 once every retained message is cleared."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            if node.children is not None:
                count += len(node.children)
                stack.extend(node.children.values())
        return count
