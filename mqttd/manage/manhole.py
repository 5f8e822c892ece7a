"""The telnet manhole: a Python prompt in the master (or the single process) for operators.

Built from ``twisted.conch``'s telnet, insults and manhole alone (its SSH side would pull
in cryptography and bcrypt): ``telnet.TelnetTransport`` runs the login (``_Login``:
Username, Password, checked by ``PasswordChecker``), then ``TelnetBootstrapProtocol``,
``insults.ServerProtocol`` and ``ColoredManhole``'s prompt with the helpers of
``mqttd.manage.helpers`` in its namespace, one namespace per session (its user signs
its bans and kicks).

Only on loopback or a unix socket (``manage.manhole_listen``, checked with the config),
and only when ``manage.manhole_password_file`` is set. A wrong user or password is
refused, counted (``manage_manhole_logins{outcome="refused"}``), logged with the peer
(within ``broker.log_lines_per_ip``) and its connection closed: each guess costs a
connection. Its bounds are ``[manage]`` keys: a login must finish within
``manhole_login_timeout``; at most ``manhole_max_sessions`` connections are open at
once; a logged-in session that gets no keystroke for ``manhole_idle_timeout`` (when set)
is closed, unless it waits for an answer.

The prompt waits for a Deferred before it prompts again (``_Manhole``): ``clients()``
asks the workers, and its answer is printed as if it had been there at once; after
``manhole_answer_wait`` seconds the prompt comes back and the answer is printed when it
arrives.
"""
from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.cred import portal
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mqttd.listeners import KeyedListener, server_endpoint
from mqttd.manage.helpers import HelperError, Later
from mqttd.manage.passwords import PasswordChecker, read_password_file

__all__ = ["ManholeService", "manhole_factory"]

log = Logger()

_KEY = "manage.manhole_listen"


class _Interpreter(manhole.ManholeInterpreter):
    """Hands a Deferred (or a helper's ``Later``) the line evaluated to to its manhole
    (``waiting``) instead of printing "<Deferred #0>"; prints a HelperError as one
    line, not a traceback."""

    waiting = None

    def displayhook(self, obj):
        if isinstance(obj, (Deferred, Later)):
            self.waiting = obj if isinstance(obj, Deferred) else obj.deferred
            return
        super().displayhook(obj)

    def excepthook(self, excType, excValue, excTraceback):
        if issubclass(excType, HelperError):
            self.write(f"error: {excValue}")
            return
        super().excepthook(excType, excValue, excTraceback)


def _shown(result):
    if isinstance(result, Failure):
        if result.check(HelperError):
            return f"error: {result.value}"
        return f"error: {result.type.__name__}: {result.getErrorMessage()}"
    return None if result is None else repr(result)


class _Manhole(manhole.ColoredManhole):
    def __init__(self, namespace, clock, manage):
        super().__init__(namespace)
        self._clock = clock
        self._wait = manage.manhole_answer_wait
        self._idle = manage.manhole_idle_timeout  # 0: no limit
        self._idle_timer = None
        self._waiting = None  # the Deferred the prompt waits for
        self._answers = 0  # Deferreds not fired yet, waited for or not
        self._held = []  # lines typed meanwhile, run once it has fired
        self._gone = False

    def connectionMade(self):
        super().connectionMade()
        self.interpreter = _Interpreter(self, self.namespace)
        self._touched()

    def connectionLost(self, reason):
        self._gone = True
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        super().connectionLost(reason)

    def keystrokeReceived(self, keyID, modifier):
        self._touched()
        super().keystrokeReceived(keyID, modifier)

    def _touched(self):
        """A keystroke (or the start): the idle deadline moves on."""
        if not self._idle:
            return
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.reset(self._idle)
        else:
            self._idle_timer = self._clock.callLater(self._idle, self._idled)

    def _idled(self):
        self._idle_timer = None
        if self._answers:  # its user waits for an answer: not idle
            self._touched()
            return
        self.terminal.nextLine()
        self.terminal.write(f"idle for {self._idle:g} s (manage.manhole_idle_timeout): "
                            f"closed")
        self.terminal.nextLine()
        self.terminal.loseConnection()

    def lineReceived(self, line):
        if self._waiting is not None:
            self._held.append(line)
            return
        self.pn = bool(self.interpreter.push(line))
        waiting, self.interpreter.waiting = self.interpreter.waiting, None
        if waiting is None:
            self._prompt()
            return
        self._waiting = waiting
        self._answers += 1
        timer = self._clock.callLater(self._wait, self._gave_up, waiting)
        waiting.addBoth(self._answered, waiting, timer)

    def _prompt(self):
        if self._needsNewline():
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])

    def _answered(self, result, waiting, timer):
        self._answers -= 1
        self._touched()
        if not isinstance(result, Failure):
            self.namespace["_"] = result
        text = _shown(result)
        if self._gone:
            return None
        if self._waiting is not waiting:  # the prompt stopped waiting: print it as news
            if text is not None:
                self.addOutput(text + "\n", True)
            return None
        self._waiting = None
        timer.cancel()
        if text is not None:
            self.terminal.write(text)
        self._prompt()
        held, self._held = self._held, []
        for index, line in enumerate(held):
            self.terminal.write(line)  # echoed after its prompt, as if typed now
            self.terminal.nextLine()
            self.lineReceived(line)
            if self._waiting is not None:
                self._held = held[index + 1:] + self._held
                break
        return None

    def _gave_up(self, waiting):
        if self._waiting is waiting and not self._gone:
            self._waiting = None
            self.terminal.write("(still waiting; the answer is printed when it comes)")
            self._prompt()


class _Login(telnet.AuthenticatingTelnetProtocol):
    """Username and password, then the manhole; a refusal is logged and closes."""

    def __init__(self, portal, clock, sessions, login_timeout):
        super().__init__(portal)
        self._clock = clock
        self._sessions = sessions
        self._login_timeout = login_timeout
        self._tried = ""
        self._timer = None
        self._counted = False  # holds one of manage.manhole_max_sessions

    def _peer(self):
        address = self.transport.getPeer()
        host = getattr(address, "host", None)
        return str(address) if host is None else f"{host}:{address.port}"

    def connectionMade(self):
        if not self._sessions.opened():
            self.transport.write(b"too many manhole sessions open; try again later\r\n")
            self.transport.loseConnection()
            return
        self._counted = True
        self._timer = self._clock.callLater(self._login_timeout, self._too_slow)
        super().connectionMade()

    def _too_slow(self):
        self._timer = None
        self.transport.write(b"\r\nlogin timed out\r\n")
        self.transport.loseConnection()

    # A CR and its LF that come in two reads end a line with the CR still on it.
    def telnet_User(self, line):
        return super().telnet_User(line.rstrip(b"\r"))

    def telnet_Password(self, line):
        self._tried = self.username.decode("utf-8", "replace")
        return super().telnet_Password(line.rstrip(b"\r"))

    def _cbLogin(self, ial):
        self._stop_timer()
        self._sessions.login(True, self._tried, self._peer())
        # From here the transport talks to the session, not to us: it says when it ends.
        ial[1].on_lost = self._released
        super()._cbLogin(ial)

    def _ebLogin(self, failure):
        self._stop_timer()
        self._sessions.login(False, self._tried, self._peer())
        self.transport.write(b"\r\nAuthentication failed\r\n")
        self.transport.loseConnection()

    def _stop_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason):
        self._stop_timer()
        self._released()
        super().connectionLost(reason)

    def _released(self):
        if self._counted:
            self._counted = False
            self._sessions.closed()


class _Session(telnet.TelnetBootstrapProtocol):
    """The logged-in session; ``on_lost()`` once it ends (its login no longer hears)."""

    on_lost = None

    def connectionLost(self, reason):
        try:
            super().connectionLost(reason)
        finally:
            if self.on_lost is not None:
                on_lost, self.on_lost = self.on_lost, None
                on_lost()


class _Sessions:
    """How many are open (``manage_manhole_sessions``), and the login log and counts."""

    def __init__(self, metrics, log_rate, limit):
        self._metrics = metrics
        self._log_rate = log_rate
        self._limit = limit

    def opened(self):
        if self._metrics.manage_manhole_sessions >= self._limit:
            return False
        self._metrics.manage_manhole_sessions += 1
        return True

    def closed(self):
        self._metrics.manage_manhole_sessions -= 1

    def login(self, accepted, user, peer):
        self._metrics.manage_manhole_logins["accepted" if accepted else "refused"] += 1
        if accepted:
            log.info("manhole: {user} logged in from {peer}", user=user, peer=peer)
        elif self._log_rate.allow(peer.rpartition(":")[0] or peer):
            log.warn("manhole: login refused for {user!r} from {peer}: wrong user or "
                     "password", user=user, peer=peer)


@implementer(portal.IRealm)
class _Realm:
    def __init__(self, namespace_for, clock, manage):
        self._namespace_for = namespace_for
        self._clock = clock
        self._manage = manage

    def requestAvatar(self, avatarId, mind, *interfaces):
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the manhole speaks telnet only")
        session = _Session(
            insults.ServerProtocol, _Manhole, self._namespace_for(avatarId), self._clock,
            self._manage)
        return telnet.ITelnetProtocol, session, lambda: None


class _ManholeFactory(protocol.ServerFactory):
    noisy = False  # no line per connection


def manhole_factory(clock, manage, users, namespace_for, metrics, log_rate):
    """The telnet factory: ``manage`` the ``[manage]`` section (its ``manhole_*``
    bounds); ``users`` {user: password bytes}; ``namespace_for(user)`` the helpers of
    one session."""
    sessions = _Sessions(metrics, log_rate, manage.manhole_max_sessions)
    checked = portal.Portal(_Realm(namespace_for, clock, manage), [PasswordChecker(users)])
    factory = _ManholeFactory()
    factory.protocol = lambda: telnet.TelnetTransport(_Login, checked, clock, sessions,
                                                      manage.manhole_login_timeout)
    return factory


class ManholeService(KeyedListener):
    """The manhole on ``config.manhole_listen`` (``[manage]``), its users read from
    ``config.manhole_password_file`` now (ConfigError if it cannot be)."""

    def __init__(self, reactor, config, namespace_for, metrics, log_rate):
        users = read_password_file(config.manhole_password_file)
        endpoint = server_endpoint(reactor, _KEY, config.manhole_listen)
        super().__init__(endpoint, manhole_factory(reactor, config, users, namespace_for,
                                                   metrics, log_rate),
                         _KEY, config.manhole_listen)
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self.on_bound(self._bound)

    def _bound(self, port):
        self.port = port
        address = port.getHost()
        where = (f"{address.host}:{address.port}" if hasattr(address, "port")
                 else str(getattr(address, "name", address)))
        log.info("manhole listening on {where} ({description})", where=where,
                 description=self.description)
        return port
