"""The recent trace events of each client, in memory: what ``trace(client_id)`` answers.

Each process keeps its own window of the events it wrote (the master its accepts and
auth results, a worker its clients' connects, publishes and disconnects); the tree's
answer is the union (``mqttd.manage.trace_tree``). Bounded three ways, so a storm of
client ids or a chatty traced client cannot grow it:

- per client, ``client_bytes`` of events: its oldest go first;
- ``max_clients`` clients, the least recently written first out (LRU);
- ``max_bytes`` in all: again the least recently written clients go first.

An event is kept as its JSON line (what the file got): its size is what it costs, plus a
fixed overhead per event and per client (``EVENT_OVERHEAD``, ``CLIENT_OVERHEAD``: the
deque slot, the string object, the dict entry), so the bound is on memory, not on counts.
"""
from collections import OrderedDict, deque
import json

__all__ = ["CLIENT_OVERHEAD", "EVENT_OVERHEAD", "RecentEvents"]

EVENT_OVERHEAD = 64  # a str object's header and a deque slot
CLIENT_OVERHEAD = 256  # the key, the OrderedDict entry, the deque and its block


class _Client:
    __slots__ = ("lines", "size")

    def __init__(self):
        self.lines = deque()
        self.size = 0


class RecentEvents:
    """``add(client_id, line)`` as events are written; ``recent(client_id)`` reads them.

    ``metrics`` (a Metrics, or None) gets ``trace_window_bytes``, ``trace_window_clients``
    and ``trace_window_evicted``; ``on_first_eviction()`` is called once, when the window
    first has to forget a client (the log line that a bound is reached).
    """

    def __init__(self, max_clients, max_bytes, client_bytes, metrics=None,
                 on_first_eviction=None):
        self._max_clients = max_clients
        self._max_bytes = max_bytes
        self._client_bytes = client_bytes
        self._metrics = metrics
        self._on_first_eviction = on_first_eviction
        self._clients = OrderedDict()  # client id -> _Client, least recently written first
        self.size = 0

    def __len__(self):
        return len(self._clients)

    def add(self, client_id, line):
        if self._max_clients <= 0 or client_id is None:
            return
        cost = len(line) + EVENT_OVERHEAD
        clients = self._clients
        client = clients.get(client_id)
        if client is None:
            client = clients[client_id] = _Client()
            client.size = CLIENT_OVERHEAD + len(client_id)
            self.size += client.size
        else:
            clients.move_to_end(client_id)
        client.lines.append(line)
        client.size += cost
        self.size += cost
        while client.size > self._client_bytes and len(client.lines) > 1:
            dropped = len(client.lines.popleft()) + EVENT_OVERHEAD
            client.size -= dropped
            self.size -= dropped
        while len(clients) > 1 and (len(clients) > self._max_clients
                                    or self.size > self._max_bytes):
            self._evict()
        self._gauges()

    def _evict(self):
        _, oldest = self._clients.popitem(last=False)
        self.size -= oldest.size
        if self._metrics is not None:
            self._metrics.trace_window_evicted += 1
        if self._on_first_eviction is not None:
            on_first, self._on_first_eviction = self._on_first_eviction, None
            on_first()

    def _gauges(self):
        metrics = self._metrics
        if metrics is not None:
            metrics.trace_window_bytes = self.size
            metrics.trace_window_clients = len(self._clients)

    def recent(self, client_id):
        """The events kept for ``client_id``, oldest first, as dicts (a copy)."""
        client = self._clients.get(client_id)
        if client is None:
            return []
        return [json.loads(line) for line in client.lines]
