"""The manhole's password file (``manage.manhole_password_file``) and its checker.

One ``USER:PASSWORD`` a line, as the Debian package's postinst writes
/etc/mqttd/manhole.passwd (``admin:`` and 32 random characters, root:mqttd 0640); blank
lines and ``#`` comments are skipped; a password may hold ``:`` (the first one ends the
user). Read once at start: a file that is missing, unreadable, empty or malformed stops
start-up in one line naming the key (never echoing a password), and one that others may
read is warned about. Passwords are compared in constant time, and an unknown user costs
the same comparison as a wrong password, so the answer's timing tells nothing.
"""
import hmac
import os
import stat

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from mqttd.errors import ConfigError

__all__ = ["PasswordChecker", "read_password_file"]

log = Logger()

_KEY = "manage.manhole_password_file"


def read_password_file(path):
    """{user: password as bytes} of the file at ``path``; ConfigError if it holds none or
    cannot be read."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{_KEY}: cannot read {path!r}: {e.strerror or e}") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        log.warn("{key}: {path} may be read by any user of this host (mode {mode:o}); "
                 "chmod o-rw it", key=_KEY, path=path, mode=stat.S_IMODE(mode))
    users = {}
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        user, colon, password = line.partition(b":")
        if not colon or not user or not password:
            raise ConfigError(f"{_KEY}: {path} line {number}: not USER:PASSWORD (both "
                              f"non-empty)")
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{_KEY}: {path} line {number}: the user is not UTF-8") from None
        users[name] = password
    if not users:
        raise ConfigError(f"{_KEY}: {path} holds no USER:PASSWORD line")
    return users


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Checks a telnet login against ``users`` ({user: password bytes}); the avatar id
    is the user's name."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users):
        self._users = dict(users)
        self._decoy = os.urandom(32)  # compared for an unknown user

    def requestAvatarId(self, credentials):
        username = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, str):
            password = password.encode("utf-8")
        known = self._users.get(username)
        same = hmac.compare_digest(password, self._decoy if known is None else known)
        if known is not None and same:
            return succeed(username)
        return fail(UnauthorizedLogin("wrong user or password"))
