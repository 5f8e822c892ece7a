"""Who may connect: the static username/password authenticator.

The broker asks an authenticator for a CONNACK return code and waits on a Deferred, so a
later token check against the accounts database (a network or thread round trip) drops
in without touching the protocol code. This one answers from the config at once.
"""
import hmac

from twisted.internet.defer import succeed

from mqttd.broker.admission import AuthResult
from mqttd.codec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_NOT_AUTHORIZED,
)

__all__ = ["StaticAuthenticator"]


class StaticAuthenticator:
    """Checks CONNECT credentials against ``AuthConfig.users``.

    No username: accepted only when ``allow_anonymous``. A username must come with the
    configured password; passwords are compared in constant time so response timing does
    not reveal how much of a guess was right. A user with an ``account`` is let in as
    that account's (``AuthResult.account``: its topic namespace).
    """

    __slots__ = ("_allow_anonymous", "_passwords", "_accounts")

    def __init__(self, auth_config):
        self._allow_anonymous = auth_config.allow_anonymous
        self._passwords = {
            u.username: u.password.encode("utf-8") for u in auth_config.users
        }
        self._accounts = {u.username: AuthResult(CONNACK_ACCEPTED, account=u.account)
                          for u in auth_config.users if getattr(u, "account", "")}

    def authenticate(self, client_id, username, password, peer=None):
        """A Deferred of the CONNACK return code for this CONNECT, or of an AuthResult
        naming the account of a user that has one."""
        code = self.check(username, password)
        if code == CONNACK_ACCEPTED and username in self._accounts:
            return succeed(self._accounts[username])
        return succeed(code)

    def account_of(self, username):
        """The account of static user ``username`` (None: none, or not a user)."""
        result = self._accounts.get(username)
        return None if result is None else result.account

    def check(self, username, password):
        """The synchronous decision behind ``authenticate``."""
        if username is None:
            return CONNACK_ACCEPTED if self._allow_anonymous else CONNACK_NOT_AUTHORIZED
        expected = self._passwords.get(username)
        if expected is None or password is None:
            # Still compare once, so unknown users cost the same as wrong passwords.
            hmac.compare_digest(b"", password or b"")
            return CONNACK_BAD_CREDENTIALS
        if hmac.compare_digest(expected, password):
            return CONNACK_ACCEPTED
        return CONNACK_BAD_CREDENTIALS
