"""The gate's hold on each connection it let in: its ticket, and the account quotas.

Every accepted CONNECT (static users and anonymous clients too) gets a ``Ticket``: who
it is (client id, username, peer, account) and, for a token user, the token, so the
gate can look it up again when accounts change and kick the connection if it is now
refused. The connection releases its ticket once when it ends (``release()`` is
idempotent): that frees its quota seat and tells the flapping detector.

``LiveTickets`` keeps the tickets of live connections by client id within its account
(``mqttd.namespace.session_key``: two tenants' "dev-1" are two; the newest one per id:
an older one is being taken over) and the quota seats: per account, the distinct
client ids connected. A takeover by the same client id holds one seat however many
connections of that id overlap, so the count is exact: the (N+1)-th distinct client id
is refused, and admitted again once one of the N releases. Everything here is on the
reactor thread and synchronous, so a check and the seat it takes are one step.

Memory: one ticket per open connection (bounded by ``broker.max_connections``; its
token is part of a CONNECT already read, at most ``broker.max_connect_size``).
"""

from mqttd.namespace import session_key

__all__ = ["LiveTickets", "Ticket"]


class Ticket:
    """One accepted connection, as the gate knows it. ``token``/``token_hash``/``prefix``
    are None for a static user or an anonymous client."""

    __slots__ = ("client_id", "username", "host", "account", "token", "token_hash",
                 "prefix", "released", "kicked", "_on_release")

    def __init__(self, client_id, username, host, account, token, token_hash, prefix,
                 on_release):
        self.client_id = client_id
        self.username = username
        self.host = host
        self.account = account
        self.token = token
        self.token_hash = token_hash
        self.prefix = prefix
        self.released = False
        self.kicked = False  # asked to close once already
        self._on_release = on_release

    def release(self):
        """The connection ended: free its seat, count its disconnect (once)."""
        if self.released:
            return
        self.released = True
        self._on_release(self)

    def __repr__(self):
        return (f"<Ticket {self.client_id!r} account={self.account!r} "
                f"token={self.prefix!r} from {self.host!r}>")


class LiveTickets:
    """The live tickets and the account seats; ``on_released(ticket)`` after each
    release (the flapping detector's feed); ``on_unseated(account)`` (optional) when a
    client id gives back its account's seat (the cluster's count follows)."""

    def __init__(self, metrics, on_released, on_unseated=None):
        self._metrics = metrics
        self._on_released = on_released
        self._on_unseated = on_unseated
        self._by_client = {}  # session key -> its newest live Ticket
        self._seats = {}  # account -> {client id: live tickets of that id}

    def issue(self, client_id, username, host, account=None, token=None, token_hash=None,
              prefix=None, max_connections=None):
        """A ticket for this connection, its seat taken; None if ``account`` already
        has ``max_connections`` other client ids connected (None: no quota)."""
        if account is not None:
            seats = self._seats.get(account)
            if seats is None:
                seats = self._seats[account] = {}
            if (client_id not in seats and max_connections is not None
                    and len(seats) >= max_connections):
                if not seats:
                    del self._seats[account]
                return None
            seats[client_id] = seats.get(client_id, 0) + 1
        ticket = Ticket(client_id, username, host, account, token, token_hash, prefix,
                        self._release)
        self._by_client[session_key(account, client_id)] = ticket
        self._metrics.edge_gate_tickets_open += 1
        return ticket

    def get(self, client_id, account=None):
        """The live ticket of ``client_id`` in ``account``, or None."""
        return self._by_client.get(session_key(account, client_id))

    def __iter__(self):
        """The newest live ticket of every client id (a copy: kicks may release)."""
        return iter(list(self._by_client.values()))

    def __len__(self):
        return len(self._by_client)

    def seats_taken(self, account):
        """Distinct client ids of ``account`` connected now."""
        return len(self._seats.get(account, ()))

    def seated(self, account, client_id):
        """Whether ``client_id`` holds a seat of ``account`` now (a takeover keeps it)."""
        return client_id in self._seats.get(account, ())

    def seat_counts(self):
        """{account: distinct client ids connected} of every account with a seat taken."""
        return {account: len(seats) for account, seats in self._seats.items()}

    def tokens(self):
        """The tokens of the live token users, for looking them up again."""
        return {ticket.token for ticket in self._by_client.values() if ticket.token is not None}

    def _release(self, ticket):
        account = ticket.account
        if account is not None:
            seats = self._seats[account]
            left = seats[ticket.client_id] - 1
            if left:
                seats[ticket.client_id] = left
            else:
                del seats[ticket.client_id]
                if not seats:
                    del self._seats[account]
                if self._on_unseated is not None:
                    self._on_unseated(account)
        key = session_key(account, ticket.client_id)
        if self._by_client.get(key) is ticket:
            del self._by_client[key]
        self._metrics.edge_gate_tickets_open -= 1
        self._on_released(ticket)
