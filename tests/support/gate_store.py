"""An in-memory GateStore for the gate's unit tests: the method names of the real one
(``mqttd.store.accounts.GateStore``), every call counted, answers at once or held.

``tokens`` maps a token to its ``TokenRecord`` (absent: unknown), ``ban_records`` maps
(kind, value) to a ``BanRecord``; any change through the helpers raises a counter as
the real triggers do: ``counter`` for tokens and accounts (``put_token``, ``revoke``,
``disable_account``), ``ban_counter`` for bans (``put_ban``, ``remove_ban``). ``hold = True``
keeps single lookups in flight until ``finish_lookups()``; ``fail`` makes the next calls
fail with ``StoreDown`` (a store error, as the thread pool would deliver it).
"""
from collections import Counter

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from mqttd.store.gate_records import StoreVersions, TokenRecord, token_prefix

__all__ = ["FakeGateStore", "StoreDown", "record"]


class StoreDown(Exception):
    """The store's error in these tests."""


def record(token, account="acme", token_active=True, account_active=True,
           max_connections=None):
    return TokenRecord(token_prefix(token), account, token_active, account_active,
                       max_connections)


class FakeGateStore:
    def __init__(self):
        self.tokens = {}
        self.ban_records = {}
        self.account_records = []  # AccountRecords, for accounts()
        self.counter = 1  # gate_version: accounts and tokens
        self.ban_counter = 1  # ban_version
        self.calls = Counter()  # method name -> calls
        self.looked_up = Counter()  # token -> lookup_token calls with it
        self.hold = False
        self.held = []  # (Deferred, token) of lookups in flight
        self.fail = set()  # method names that fail now
        self.started = self.closed = False

    # -- the GateStore's methods ------------------------------------------------------

    def start(self):
        self.calls["start"] += 1
        self.started = True
        return succeed(None)

    def close(self):
        self.calls["close"] += 1
        self.closed = True
        return succeed(None)

    def lookup_token(self, token):
        self.calls["lookup_token"] += 1
        self.looked_up[token] += 1
        if "lookup_token" in self.fail:
            return fail(StoreDown("database is locked"))
        if self.hold:
            d = Deferred()
            self.held.append((d, token))
            return d
        return succeed(self.tokens.get(token))

    def lookup_tokens(self, tokens):
        self.calls["lookup_tokens"] += 1
        if "lookup_tokens" in self.fail:
            return fail(StoreDown("database is locked"))
        return succeed({token: self.tokens.get(token) for token in tokens})

    def bans(self):
        self.calls["bans"] += 1
        if "bans" in self.fail:
            return fail(StoreDown("database is locked"))
        return succeed(list(self.ban_records.values()))

    def add_ban(self, ban):
        self.calls["add_ban"] += 1
        if "add_ban" in self.fail:
            return fail(StoreDown("disk full"))
        self.put_ban(ban)
        return succeed(None)

    def remove_ban(self, kind, value):
        self.calls["remove_ban"] += 1
        removed = self.ban_records.pop((kind, value), None) is not None
        if removed:
            self.ban_counter += 1
        return succeed(removed)

    def accounts(self):
        self.calls["accounts"] += 1
        return succeed(sorted(self.account_records, key=lambda account: account.name))

    def versions(self):
        self.calls["versions"] += 1
        if "versions" in self.fail:
            return fail(StoreDown("database is locked"))
        return succeed(self.current())

    def current(self):
        """The StoreVersions as ``versions()`` answers them now."""
        return StoreVersions(self.counter, self.ban_counter)

    # -- what a test changes (the operator's CLI, in effect) ----------------------------

    def put_token(self, token, **fields):
        self.tokens[token] = record(token, **fields)
        self.counter += 1

    def revoke(self, token):
        self.tokens[token] = attrs.evolve(self.tokens[token], token_active=False)
        self.counter += 1

    def disable_account(self, account):
        for token, rec in self.tokens.items():
            if rec.account == account:
                self.tokens[token] = attrs.evolve(rec, account_active=False)
        self.counter += 1

    def put_ban(self, ban):
        self.ban_records[(ban.kind, ban.value)] = ban
        self.ban_counter += 1

    def finish_lookups(self):
        """Answer every held lookup (from ``tokens`` as it is now)."""
        held, self.held = self.held, []
        for d, token in held:
            d.callback(self.tokens.get(token))

    def fail_lookups(self):
        """Fail every held lookup."""
        held, self.held = self.held, []
        for d, _ in held:
            d.errback(StoreDown("database is locked"))
