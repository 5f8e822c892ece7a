"""The gate: who may connect, decided once per CONNECT, before a worker or a session.

One object that both the single process (as the broker's authenticator) and the master
(at ``_on_connect``) ask: ``authenticate(client_id, username, password, peer)`` answers a
Deferred ``AuthResult`` and never fails. In order, the first that says no is the answer:

1. bans (``BanList``): the client id, the username, the peer address → 0x05 "banned";
2. no username: ``auth.allow_anonymous`` → else 0x05 "not authorized";
3. a username in ``auth.users``: its password, as ``StaticAuthenticator`` checks it
   (constant time) → else 0x04 "bad credentials";
4. any other username is a device TOKEN (Ubidots' convention): the per-token rate
   (``TokenRate``: at most ``rate_burst`` attempts in any ``rate_burst /
   rate_per_token`` seconds, before any lookup) → 0x05 "auth rate"; the negative cache of unknown
   tokens, then the cache or the store (``TokenCache``) → 0x05 "bad token", "token
   revoked", "account inactive"; with ``auth.require_password`` the password must be
   the token too → else 0x04 "bad credentials"; a store that fails → 0x03 "auth
   unavailable" (logged with its traceback);
5. the account's quota (``LiveTickets``: distinct client ids; across nodes, Redis'
   count, ``mqttd.cluster.seats``) → 0x05 "quota";
6. accepted: ``AuthResult(0, account, ticket)``.

Every refusal is counted in ``edge_gate_refused`` by its reason and logged (within the
peer's ``LogRateLimit`` budget) with the client id, the peer, the token's prefix (never
the token) and the limit. The ticket's release feeds the flapping detector, whose bans
go into force here at once, to the store, and kick the live connections they match
(``kick(client_id, reason, account)``, given by the owner). ``GateSync`` applies the
store's changes (``forget_tokens``, ``reloading_bans``, ``reload_bans``, ``recheck``).

SIGHUP brings new ``[auth]`` and ``[flapping_detect]`` (``reloading``): the next CONNECT
meets the new static users, anonymous rule, ``require_password`` and rate, the next
disconnect the new flapping rules. Live connections stay, but for those the new rules
no longer let in, which are kicked as mosquitto's reload does: an anonymous client once
``allow_anonymous`` is off ("anonymous off"), a static user removed or whose password
or account changed ("user changed"). A token user's password is not kept, so a new
``require_password`` applies from its next CONNECT.
"""
import hmac

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from mqttd.broker.admission import AuthResult
from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
)
from mqttd.edge.ban_list import BanList
from mqttd.edge.flapping import FlappingDetector
from mqttd.edge.tickets import LiveTickets
from mqttd.edge.token_cache import TokenCache
from mqttd.edge.token_rate import TokenRate
from mqttd.store.bans import stored_ban_value
from mqttd.store.gate_records import token_hash, token_prefix, who_of

__all__ = ["Gate", "peer_host"]

log = Logger()


def peer_host(peer):
    """The address of ``peer`` (an IAddress, a host string or None) or None."""
    if peer is None or isinstance(peer, str):
        return peer or None
    return getattr(peer, "host", None) or None


class Gate:
    """``auth_config`` is ``[auth]``, ``flapping_config`` ``[flapping_detect]`` (both
    duck-typed); ``store`` a GateStore (``lookup_token``, ``add_ban``; ``GateSync`` uses
    the rest); ``log_rate`` the process's per-address ``LogRateLimit``; ``kick`` a
    callable ``kick(client_id, reason, account)`` that closes that client's live
    connection (None: nothing is kicked). ``shared`` makes the tickets and the flapping
    detector when several nodes share them (``mqttd.cluster.state.ClusterState``:
    ``tickets(metrics, on_released)``, ``flapping(clock, config, on_ban, metrics,
    log_rate)``); None: this node's memory alone."""

    def __init__(self, clock, auth_config, flapping_config, store, metrics, log_rate,
                 kick=None, shared=None):
        self._store = store
        self._metrics = metrics
        self._log_rate = log_rate
        self.kick = kick
        self._static = StaticAuthenticator(auth_config)
        self._users = _users(auth_config)  # username -> User, to tell which changed
        self._static_users = frozenset(self._users)
        self._require_password = auth_config.require_password
        self.bans = BanList(clock, metrics)
        self._tokens = TokenCache(clock, store, metrics, auth_config.token_cache_size,
                                  auth_config.negative_cache_ttl)
        self._rate = TokenRate(clock, auth_config.rate_per_token, auth_config.rate_burst)
        if shared is None:
            self.tickets = LiveTickets(metrics, self._released)
            self._flapping = FlappingDetector(clock, flapping_config, self.ban, metrics,
                                              log_rate)
        else:
            self.tickets = shared.tickets(metrics, self._released)
            self._flapping = shared.flapping(clock, flapping_config, self.ban, metrics,
                                             log_rate)

    # -- the question ----------------------------------------------------------------------

    def authenticate(self, client_id, username, password, peer=None):
        """A Deferred ``AuthResult`` for this CONNECT (see the module for the order).
        ``client_id`` is the id the connection will have: an empty one already
        replaced by a generated id (quotas and kicks key on it); ``password`` bytes."""
        host = peer_host(peer)
        refused = self._banned(client_id, username, host)
        if refused is not None:
            return succeed(refused)
        if username is None or username in self._static_users:
            return maybeDeferred(self._static_check, client_id, username, password, host)
        key = token_hash(username)
        prefix = token_prefix(username)
        who = f"token {prefix}"
        if not self._rate.allow(key):
            return succeed(self._refuse(CONNACK_NOT_AUTHORIZED, "auth rate", client_id, host,
                                        who, "auth.rate_per_token"))
        if self._tokens.is_unknown(key):
            return succeed(self._refuse(CONNACK_NOT_AUTHORIZED, "bad token", client_id, host,
                                        who, "auth.negative_cache_ttl"))
        d = self._tokens.lookup(username, key)
        d.addCallback(self._judge, client_id, username, key, prefix, password, host)
        d.addErrback(self._unavailable, client_id, host, who)
        return d

    def _banned(self, client_id, username, host):
        ban = self.bans.match(client_id, username, host)
        if ban is None:
            return None
        return self._refuse(CONNACK_NOT_AUTHORIZED, "banned", client_id, host,
                            who_of(username, self._static_users),
                            f"ban of {ban.kind} by {ban.who}: {ban.reason}")

    def _static_check(self, client_id, username, password, host):
        code = self._static.check(username, password)
        if username is None:
            method, reason, limit = "anonymous", "not authorized", "auth.allow_anonymous"
        else:
            method, reason, limit = "user", "bad credentials", "auth.users"
        if code != CONNACK_ACCEPTED:
            return self._refuse(code, reason, client_id, host,
                                who_of(username, self._static_users), limit)
        account = self._static.account_of(username)  # auth.users' account, if any
        ticket = self.tickets.issue(client_id, username, host, account)
        if isinstance(ticket, Deferred):  # its id's seat asked for in the cluster: after it
            return ticket.addCallback(lambda issued: self._accept(method, issued, account))
        return self._accept(method, ticket, account)

    def _judge(self, record, client_id, token, key, prefix, password, host):
        refused = self._banned(client_id, token, host)  # a ban made while we looked
        if refused is not None:
            return refused
        who = f"token {prefix}"
        refusal = _refusal(record)
        if refusal is not None:
            return self._refuse(CONNACK_NOT_AUTHORIZED, refusal, client_id, host, who,
                                "accounts and tokens")
        if self._require_password and not _same_token(password, token):
            return self._refuse(CONNACK_BAD_CREDENTIALS, "bad credentials", client_id, host,
                                who, "auth.require_password")
        ticket = self.tickets.issue(client_id, token, host, record.account, token, key,
                                    prefix, record.max_connections)
        if isinstance(ticket, Deferred):  # the cluster's count asked (mqttd.cluster)
            return ticket.addCallback(self._seated, record, client_id, host, who)
        return self._seated(ticket, record, client_id, host, who)

    def _seated(self, ticket, record, client_id, host, who):
        if ticket is None:
            return self._refuse(CONNACK_NOT_AUTHORIZED, "quota", client_id, host, who,
                                f"max_connections {record.max_connections} of account "
                                f"{record.account}")
        return self._accept("token", ticket, record.account)

    def _unavailable(self, failure, client_id, host, who):
        log.failure("token lookup failed for {client_id} from {peer} ({who})",
                    failure, client_id=client_id, peer=host, who=who)
        return self._refuse(CONNACK_SERVER_UNAVAILABLE, "auth unavailable", client_id, host,
                            who, "the accounts store")

    def _accept(self, method, ticket, account=None):
        self._metrics.edge_gate_accepted[method] += 1
        return AuthResult(CONNACK_ACCEPTED, account, ticket)

    def _refuse(self, code, reason, client_id, host, who, limit):
        self._metrics.edge_gate_refused[reason] += 1
        peer = host or "unix socket"
        if self._log_rate.allow(peer):
            log.info("refused {client_id} from {peer} at the gate: {reason} ({who}; {limit})",
                     client_id=client_id, peer=peer, reason=reason, who=who, limit=limit)
        return AuthResult(code, reason=reason, limit=limit)

    # -- bans and kicks ------------------------------------------------------------------

    def ban_value(self, kind, value):
        """``value`` as a ban of ``kind`` holds it (``stored_ban_value``): a username not
        among the static users now is a device token, banned by its hash. AccountsError
        for a value no ban of ``kind`` can have."""
        return stored_ban_value(kind, value, self._static_users)

    def ban(self, record):
        """Put ``record`` (a BanRecord) in force now, store it, and kick what it matches."""
        if not self.bans.add(record):
            log.warn("ban of {kind} {value} not put in force: over, or too many live bans",
                     kind=record.kind, value=record.value)
            return
        self._kick_banned()  # (a client id: in every account that has one)
        d = maybeDeferred(self._store.add_ban, record)
        d.addCallbacks(lambda _: self.bans.confirmed(record), self._not_stored,
                       errbackArgs=(record,))

    def _not_stored(self, failure, record):
        log.failure("ban of {kind} {value} not stored (in force here until {until})",
                    failure, kind=record.kind, value=record.value, until=record.until)

    def kick_client(self, client_id, reason, account=None, any_account=False):
        """Close the live connection of ``client_id`` in ``account`` (or in every
        account that has one: ``any_account``), as a ban would: the operator's kick.
        The tickets kicked (none: no such connection, or it is closing already)."""
        kicked = []
        for ticket in self.tickets:
            if ticket.client_id == client_id and (any_account or ticket.account == account):
                if self._kick(ticket, reason):
                    kicked.append(ticket)
        return kicked

    def flapping_now(self, limit):
        """The flapping detector's ``busiest(limit)``: who reconnects the most now."""
        return self._flapping.busiest(limit)

    def _kick_banned(self):
        for ticket in self.tickets:
            if self.bans.match(ticket.client_id, ticket.username, ticket.host) is not None:
                self._kick(ticket, "banned")

    def _kick(self, ticket, reason):
        """Ask the owner to close ``ticket``'s connection (once); True if asked now."""
        if self.kick is None or ticket.kicked or ticket.released:
            return False
        ticket.kicked = True
        self._metrics.edge_gate_kicked[reason] += 1
        peer = ticket.host or "unix socket"
        if self._log_rate.allow(peer):
            log.info("kicking {client_id} from {peer}: {reason} ({who})",
                     client_id=ticket.client_id, peer=peer, reason=reason,
                     who=_ticket_who(ticket))
        self.kick(ticket.client_id, reason, ticket.account)
        return True

    def _released(self, ticket):
        username_key = ticket.token_hash if ticket.token is not None else ticket.username
        self._flapping.disconnected(ticket.client_id, username_key, ticket.host,
                                    _ticket_who(ticket))

    # -- SIGHUP ----------------------------------------------------------------------------

    def reloading(self, auth_config, flapping_config):
        """New ``[auth]`` and ``[flapping_detect]`` (as ``load_config`` checked them), the
        static users built now and nothing changed yet; call the answer to put them in
        force (see the module)."""
        static = StaticAuthenticator(auth_config)
        users = _users(auth_config)

        def apply():
            before = self._users
            self._static, self._users = static, users
            self._static_users = frozenset(users)
            self._require_password = auth_config.require_password
            self._rate.reconfigure(auth_config.rate_per_token, auth_config.rate_burst)
            self._flapping.reconfigure(flapping_config)
            self._kick_static(before, auth_config.allow_anonymous)
        return apply

    def _kick_static(self, before, allow_anonymous):
        """Kick the anonymous clients and static users the new rules refuse."""
        for ticket in self.tickets:
            if ticket.token is not None:
                continue
            if ticket.username is None:
                if not allow_anonymous:
                    self._kick(ticket, "anonymous off")
            elif self._users.get(ticket.username) != before.get(ticket.username):
                self._kick(ticket, "user changed")

    # -- the store's changes (GateSync) --------------------------------------------------

    def forget_tokens(self):
        """Accounts or tokens changed: forget the cached tokens, known and unknown."""
        self._tokens.clear()

    def reloading_bans(self):
        """Bans changed: the mark for ``reload_bans`` (read the store's after it)."""
        return self.bans.loading()

    def reload_bans(self, records, mark):
        self.bans.replace(records, mark)

    def live_tokens(self):
        """The tokens of live connections, to look up again after a change."""
        return self.tickets.tokens()

    def recheck(self, records):
        """Kick every live connection now refused: banned, or its token (``records``:
        {token: TokenRecord or None}, looked up again after accounts or tokens
        changed; empty after bans alone changed) gone, revoked or its account inactive."""
        for ticket in self.tickets:
            if self.bans.match(ticket.client_id, ticket.username, ticket.host) is not None:
                self._kick(ticket, "banned")
            elif ticket.token is not None and ticket.token in records:
                refusal = _refusal(records[ticket.token])
                if refusal is not None:
                    self._kick(ticket, refusal)

    def prune(self):
        """Drop the bans that lifted (the gauge follows)."""
        self.bans.prune()


def _users(auth_config):
    return {user.username: user for user in auth_config.users}


def _refusal(record):
    """Why a token's record refuses it, or None."""
    if record is None:
        return "bad token"
    if not record.token_active:
        return "token revoked"
    if not record.account_active:
        return "account inactive"
    return None


def _same_token(password, token):
    if password is None:
        hmac.compare_digest(b"", token.encode("utf-8"))  # the same cost as a wrong one
        return False
    if isinstance(password, str):
        password = password.encode("utf-8")
    return hmac.compare_digest(password, token.encode("utf-8"))


def _ticket_who(ticket):
    """``who_of`` for a live connection, by what it authenticated as (the static users
    may have changed since)."""
    if ticket.token is not None:
        return f"token {ticket.prefix}"
    return "anonymous" if ticket.username is None else f"user {ticket.username}"

