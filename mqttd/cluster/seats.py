"""Account quotas across nodes: ``LiveTickets``' interface, its seats counted in Redis.

This node keeps its tickets and seats exactly as in memory (``mqttd.edge.tickets``:
distinct client ids per account, a takeover holding one seat); Redis holds each node's
count per account (``mqttd.cluster.scripts``: ``seats:ACCOUNT``, field NODE/BOOT). A
client id that is not seated here yet, in an account with ``max_connections``, asks
the ``SEAT`` script, which takes the seat only if every live node's seats together are
under the quota: one step in Redis, so two nodes asking at once never both get the last
seat. ``issue`` answers a Deferred then (the gate chains it); everything else is
answered at once, as in memory: a takeover here, an account without a quota (its seat
is still counted in Redis, for when it gets one), and a quota already full here.

Another CONNECT of a client id whose seat is being asked for waits for that answer,
then is judged as a takeover or asks again: one seat per id and node, never two.

Redis down (or not answering within ``cluster.timeout``): the quota falls back to this
node's own seats, as if it were alone (``cluster_fallbacks{job="quota"}``; the link
logs the outage). Failing open is deliberate: refusing every token device of every
customer while Redis is away would be an outage of our own making (the incident), while
letting an account briefly hold up to ``max_connections`` on each node costs little.
When the link is back (``ClusterNode.on_resync``) this node writes its counts whole
(``RESEAT``), counting the seats still being asked for; a refusal that comes back after
such a rewrite gives its counted seat back.
"""
from collections import Counter

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mqttd.cluster.link import UNREACHABLE
from mqttd.cluster.scripts import RESEAT, SEAT, UNSEAT
from mqttd.edge.tickets import LiveTickets

__all__ = ["SharedTickets"]

log = Logger()

_RESEAT_CHUNK = 500  # accounts per RESEAT call


class SharedTickets:
    """``LiveTickets`` for one node of a cluster: ``node`` a ClusterNode, ``link`` its
    RedisLink; ``on_released(ticket)`` as for LiveTickets."""

    def __init__(self, node, link, metrics, on_released):
        self._node = node
        self._link = link
        self._metrics = metrics
        self._local = LiveTickets(metrics, on_released, on_unseated=self._unseated)
        self._asking = {}  # (account, client id) -> [Deferreds of CONNECTs waiting]
        self._in_flight = Counter()  # account -> SEATs asked and not answered
        # Accounts this node may have a count for in Redis (kept: one per account seen,
        # so a rewrite that was lost is never left standing).
        self._counted = set()
        self._rewrites = 0  # RESEATs sent: a refusal answered after one gives back
        self._said_error = False
        node.on_resync(self._reseat)

    # -- LiveTickets' interface ----------------------------------------------------------

    def issue(self, client_id, username, host, account=None, token=None, token_hash=None,
              prefix=None, max_connections=None):
        """A ticket, None (over quota), or a Deferred of one of them (Redis asked)."""
        local = self._local
        who = (client_id, username, host, account, token, token_hash, prefix)
        if account is None:
            return local.issue(*who)
        key = (account, client_id)
        waiting = self._asking.get(key)
        if waiting is not None:  # this id's seat is being asked for: wait, then again
            d = Deferred()
            waiting.append(d)
            d.addCallback(lambda _: self.issue(*who, max_connections=max_connections))
            return d
        if local.seated(account, client_id):
            return local.issue(*who)  # a takeover here: its seat is taken already
        if max_connections is None or not self._link.up \
                or local.seats_taken(account) >= max_connections:
            if max_connections is not None and not self._link.up:
                self._metrics.cluster_fallbacks["quota"] += 1
            ticket = local.issue(*who, max_connections=max_connections)
            if ticket is not None:
                self._count(account)
            return ticket
        return self._ask(key, who, max_connections)

    def get(self, client_id, account=None):
        return self._local.get(client_id, account)

    def __iter__(self):
        return iter(self._local)

    def __len__(self):
        return len(self._local)

    def seats_taken(self, account):
        """Distinct client ids of ``account`` connected to this node."""
        return self._local.seats_taken(account)

    def tokens(self):
        return self._local.tokens()

    # -- asking Redis --------------------------------------------------------------------

    def _seats_key(self, account):
        return self._node.key("seats", account)

    def _ask(self, key, who, max_connections):
        account = key[0]
        self._asking[key] = []
        self._in_flight[account] += 1
        self._counted.add(account)
        rewrites = self._rewrites
        d = self._link.script(SEAT, [self._seats_key(account)],
                              [self._node.field, max_connections, self._node.heartbeat_prefix])
        d.addCallbacks(self._answered, self._not_answered,
                       callbackArgs=(key, who, rewrites),
                       errbackArgs=(key, who, max_connections))
        return d

    def _answered(self, answer, key, who, rewrites):
        account = key[0]
        self._done(key)
        if answer == 1:
            ticket = self._local.issue(*who)  # Redis counted it among every node's
        else:
            ticket = None
            if rewrites != self._rewrites:  # a RESEAT counted it as taken: give it back
                self._unseated(account)
        self._wake(key)
        return ticket

    def _not_answered(self, failure, key, who, max_connections):
        account = key[0]
        self._done(key)
        self._metrics.cluster_fallbacks["quota"] += 1
        if not failure.check(*UNREACHABLE) and not self._said_error:
            self._said_error = True  # once until Redis answers a seat again
            log.failure("cluster: Redis did not answer a quota seat of account {account}; "
                        "judged by this node's seats alone", failure, account=account)
        ticket = self._local.issue(*who, max_connections=max_connections)
        if ticket is not None:
            self._count(account)
        self._wake(key)
        return ticket

    def _done(self, key):
        account = key[0]
        self._in_flight[account] -= 1
        if not self._in_flight[account]:
            del self._in_flight[account]

    def _wake(self, key):
        for d in self._asking.pop(key, ()):
            d.callback(None)

    # -- keeping Redis' count ------------------------------------------------------------

    def _count(self, account):
        """A seat taken here without SEAT (no quota, or judged locally): counted too."""
        if self._link.up:
            self._counted.add(account)
            self._link.call("HINCRBY", self._seats_key(account), self._node.field,
                            1).addErrback(lambda _: None)  # a lost link rewrites it all

    def _unseated(self, account):
        if self._link.up and account in self._counted:
            d = self._link.script(UNSEAT, [self._seats_key(account)], [self._node.field])
            d.addErrback(lambda _: None)

    def _reseat(self):
        """Write this node's seats whole (after a reconnect or a lost heartbeat)."""
        self._rewrites += 1
        self._said_error = False
        counts = self._local.seat_counts()
        for account, asking in self._in_flight.items():
            counts[account] = counts.get(account, 0) + asking
        for account in self._counted:
            counts.setdefault(account, 0)
        accounts = sorted(counts)
        for start in range(0, len(accounts), _RESEAT_CHUNK):
            chunk = accounts[start:start + _RESEAT_CHUNK]
            d = self._link.script(RESEAT, [self._seats_key(a) for a in chunk],
                                  [self._node.field, *(counts[a] for a in chunk)])
            d.addErrback(lambda _: None)  # lost again: the next reconnect rewrites
