"""Who may connect, and as which client id: the one decision a CONNECT waits for.

The rules of MQTT 3.1.1 on client ids (a length limit, an empty id only with a clean
session, a generated id for it [MQTT-3.1.3-6]) and authentication sit behind one call,
``Admission.admit(connect, peer)``, which answers with a Deferred ``Admitted`` or
``Refused``. The connection only calls it and obeys; the master's gate (bans, token
auth, quotas, flapping) will answer the same call, so the protocol does not change when
the decision moves there. The Deferred never fails: an authenticator that breaks is a
refusal with "server unavailable", logged here with its traceback.
"""
import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
)

__all__ = ["Admission", "Admitted", "AfterLoad", "AuthResult", "Refused"]

log = Logger()

# Short, stable reasons for CONNACK refusals (the log and the per-client trace key on them).
_REFUSAL_REASONS = {
    CONNACK_BAD_CREDENTIALS: "bad credentials",
    CONNACK_NOT_AUTHORIZED: "not authorized",
    CONNACK_SERVER_UNAVAILABLE: "auth unavailable",
}


@attrs.frozen
class Admitted:
    """Accept the CONNECT as ``client_id`` (the client's own, or one generated).
    ``account``: the account the client belongs to (its topic namespace), None for
    static users and anonymous clients. ``ticket``: the gate's hold on this connection
    (its quota seat, its flapping count), released once when the connection ends."""

    client_id: str
    account: str | None = None
    ticket: object = None


@attrs.frozen
class AuthResult:
    """What an authenticator may answer instead of a bare CONNACK code: the code, and
    with an accepted one the client's ``account`` and the gate's ``ticket`` (anything
    with ``release()``); with a refusal, ``reason``, a short stable key for the log
    and the counters (e.g. "auth rate", "quota"), instead of the code's own."""

    code: int
    account: str | None = None
    ticket: object = None
    reason: str | None = None
    client_id: str | None = None  # the master's id for an empty one (``admit(decided=)``)
    limit: str | None = None  # with a refusal: the key or rule that refused (the trace)


@attrs.frozen
class Refused:
    """Refuse with CONNACK ``code``; ``reason`` is a short stable key for the log.
    ``client_id``: the id it was judged as (None when the id itself was refused: it
    may be 64 kB long, not for the log). ``by_auth``: the credentials were refused."""

    code: int
    reason: str
    client_id: str | None = None
    by_auth: bool = False
    limit: str | None = None  # the key or rule that refused, if the gate named one


class Admission:
    """The CONNECT rules of one broker and its authenticator.

    ``authenticator`` has ``authenticate(client_id, username, password, peer)``
    returning (a Deferred of) a CONNACK code or an AuthResult; ``generate_client_id()``
    gives an id for an empty one.
    """

    __slots__ = ("_max_clientid_len", "_allow_zero_length_clientid", "_authenticator",
                 "_generate_client_id")

    def __init__(self, max_clientid_len, allow_zero_length_clientid, authenticator,
                 generate_client_id):
        self._max_clientid_len = max_clientid_len
        self._allow_zero_length_clientid = allow_zero_length_clientid
        self._authenticator = authenticator
        self._generate_client_id = generate_client_id

    def admit(self, connect, peer, decided=None):
        """A Deferred ``Admitted`` or ``Refused`` for ``connect`` (a parsed Connect)
        from ``peer`` (an IAddress; for the gate's per-address rules).

        ``decided``: an AuthResult the master's gate already gave this connection (a
        worker of the tree): the client id rules still hold, the authenticator is not
        asked again (the worker has no accounts to ask), and an empty client id takes
        the one the master generated, ``decided_client_id``."""
        client_id = connect.client_id
        if len(client_id) > self._max_clientid_len:
            return succeed(Refused(CONNACK_IDENTIFIER_REJECTED, "client id too long"))
        if not client_id:
            if not self._allow_zero_length_clientid or not connect.clean_session:
                return succeed(Refused(CONNACK_IDENTIFIER_REJECTED, "empty client id"))
            client_id = ((decided is not None and decided.client_id)
                         or self._generate_client_id())  # [MQTT-3.1.3-6]
        if decided is not None:
            return succeed(_decided(decided, client_id))
        d = maybeDeferred(self._authenticator.authenticate, client_id, connect.username,
                          connect.password, peer)
        d.addCallbacks(_decided, _auth_error, callbackArgs=(client_id,),
                       errbackArgs=(client_id,))
        return d


def _decided(result, client_id):
    if type(result) is not AuthResult:
        result = AuthResult(result)
    code = result.code
    if code == CONNACK_ACCEPTED:
        return Admitted(client_id, result.account, result.ticket)
    if result.ticket is not None:  # refused after all: the gate's seat is free again
        result.ticket.release()
    reason = result.reason or _REFUSAL_REASONS.get(code, "auth refused")
    return Refused(code, reason, client_id, by_auth=True, limit=result.limit)


def _auth_error(failure, client_id):
    log.failure("authenticator failed for {client_id}", failure, client_id=client_id)
    return Refused(CONNACK_SERVER_UNAVAILABLE, "auth unavailable", client_id)


class AfterLoad:
    """An admission that answers once ``loading`` (a Deferred) fired: a broker still
    reading back its retained messages and sessions must not attach a client (it would
    answer session_present=0 for a session about to be restored). A load that failed
    refuses with "server unavailable". Once loaded, it asks ``admission`` at once.
    """

    __slots__ = ("_admission", "_loaded", "_waiting")

    def __init__(self, admission, loading):
        self._admission = admission
        self._loaded = None  # True / False once the load ended
        self._waiting = []
        loading.addCallbacks(self._done, self._failed)

    def _done(self, result):
        self._end(True)
        return result

    def _failed(self, failure):
        self._end(False)
        return failure

    def _end(self, loaded):
        self._loaded = loaded
        waiting, self._waiting = self._waiting, []
        for d, connect, peer, decided in waiting:
            self._answer(connect, peer, decided).chainDeferred(d)

    def _answer(self, connect, peer, decided):
        if self._loaded:
            return self._admission.admit(connect, peer, decided)
        if decided is not None and decided.ticket is not None:
            decided.ticket.release()
        return succeed(Refused(CONNACK_SERVER_UNAVAILABLE, "not loaded", connect.client_id))

    def admit(self, connect, peer, decided=None):
        if self._loaded is not None:
            return self._answer(connect, peer, decided)
        d = Deferred()
        self._waiting.append((d, connect, peer, decided))
        return d
