"""Which worker a client goes to: rendezvous hashing of its client id over the live workers.

Sticky by client id, so a takeover and a persistent session stay on one worker: every
score depends only on (worker slot, client id), so the same id picks the same slot for as
long as that slot is live. When a slot dies only its own ids move (each to its
second-best slot), and when it comes back exactly those ids go back to it — unlike
``hash(id) % n``, which would move almost every id whenever n changes.

``home(client_id)`` is the slot an id belongs to among every configured slot, live or
not; ``pick(client_id)`` the best live one. ``route`` uses the difference for the
master: a client whose home is restarting may wait for it (its persistent session lives
there) or go to ``pick`` (and be taken over from there when it comes home).

A client with an empty client id has no session to find again: it goes to the
least-loaded live worker instead (loads counted by the master: hand-offs minus closes).
"""
import hashlib


def _score(slot, client_id):
    """A 64-bit score of (slot, id): blake2b is keyed by the slot, so no two slots share
    an ordering of the ids, and it is fast on short inputs (~0.3 us)."""
    return int.from_bytes(
        hashlib.blake2b(client_id, digest_size=8, key=slot.to_bytes(4, "big")).digest(), "big")


def _best(slots, client_id):
    if isinstance(client_id, str):
        client_id = client_id.encode("utf-8")
    return max(slots, key=lambda slot: _score(slot, client_id))


class Balancer:
    """Worker slots, which are live, and their loads."""

    def __init__(self, slots=()):
        self._slots = tuple(slots)  # every configured slot
        self._loads = {}  # live slot -> connections handed to it and not yet closed

    def up(self, slot):
        """``slot`` (a worker's index, stable across its restarts) can take connections."""
        self._loads.setdefault(slot, 0)

    def down(self, slot):
        """``slot``'s worker died: it takes nothing until ``up`` again; its load is gone
        with its connections."""
        self._loads.pop(slot, None)

    @property
    def live(self):
        return sorted(self._loads)

    def load(self, slot):
        return self._loads.get(slot, 0)

    def is_live(self, slot):
        return slot in self._loads

    def home(self, client_id):
        """The configured slot ``client_id`` belongs to (None for an empty id, or when
        no slot is configured)."""
        if not client_id or not self._slots:
            return None
        return _best(self._slots, client_id)

    def pick(self, client_id):
        """The live slot for ``client_id`` (bytes or str), or None when none is live."""
        if not self._loads:
            return None
        if not client_id:
            return min(self._loads, key=lambda slot: (self._loads[slot], slot))
        return _best(self._loads, client_id)

    def route(self, client_id, clean_session, starting=False, waited=False):
        """The live slot to hand a CONNECT to now, or None: it waits (its master's call).

        A client goes home when home is up. While the tree starts (``starting``), every
        client waits for its home. A persistent session waits for its home while it
        restarts: its session lives there. A clean one takes the best live worker at
        once, and is taken over from there if it comes back home before it goes. Past
        the wait (``waited``), any live worker.
        """
        home = self.home(client_id)
        if home is not None and home in self._loads:
            return home
        if not waited and (starting or (home is not None and not clean_session)):
            return None
        return self.pick(client_id)

    def opened(self, slot):
        if slot in self._loads:
            self._loads[slot] += 1

    def closed(self, slot):
        if self._loads.get(slot, 0) > 0:
            self._loads[slot] -= 1
