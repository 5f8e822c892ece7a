"""The manhole's namespace: helpers that answer for the whole appliance, not one process.

Each reads the ``ApplianceView`` (``mqttd.manage.view``) of the master or the single
process, and acts through the paths the appliance already has: a kick goes through the
gate's tickets and the master's kick of the worker that holds the connection, a ban
through the gate (in force at once, stored, its matches kicked), ``clients()`` asks
every worker. They return plain values (dicts and lists) that print readably; one that
needs a worker or SQLite returns ``Later`` (its Deferred), which the manhole waits for
before its next prompt (``mqttd.manage.manhole``), and ``_`` then holds the value. A bad argument raises ``HelperError``, which the
manhole shows as one line. Kicks, bans and unbans are logged with the manhole user.
"""
import inspect
import pprint

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from mqttd.manage import report as reports
from mqttd.manage.client_list import MAX_CLIENTS, ClientFilter
from mqttd.manage.output import table
from mqttd.manage.trace_service import DEFAULT_RULE_SECONDS, one_rule
from mqttd.store.accounts import AccountsError
from mqttd.store.gate_records import BanRecord

__all__ = ["HELPERS", "Clients", "HelperError", "Later", "Listing", "Report", "Shown",
           "Text", "namespace"]

log = Logger()

HELPERS = ("help", "stats", "clients", "kick", "ban", "unban", "bans", "accounts",
           "top_ips", "webhook", "report", "trace", "trace_add", "trace_rm", "trace_list")


class HelperError(Exception):
    """A helper was called wrongly: the manhole prints ``error: <message>``."""


class Later:
    """What a helper that asks the workers or SQLite returns: the manhole prints its
    result once it comes (``_`` then holds it). Not a Deferred itself: iterating a
    Deferred that has not fired (``list(d)``, ``dict(d)``) loops for ever in the master;
    this refuses to be iterated or indexed instead. ``deferred`` is the result's."""

    __slots__ = ("deferred", "_what")

    def __init__(self, deferred, what):
        self.deferred = deferred
        self._what = what

    def _later(self, *args):
        raise HelperError(f"{self._what}() answers later: run it alone, then use _")

    __iter__ = __getitem__ = __len__ = _later

    def __repr__(self):
        return f"<{self._what}(): waiting for its answer>"


class Text(str):
    """Text that the prompt prints as it is (not quoted)."""

    def __repr__(self):
        return str(self)


class Shown(dict):
    """A dict that the prompt prints one key per line."""

    def __repr__(self):
        return pprint.pformat(dict(self), width=100, sort_dicts=False)


class Listing(list):
    """A list that the prompt prints one item per line."""

    def __repr__(self):
        return pprint.pformat(list(self), width=100, sort_dicts=False)


class Clients(dict):
    """``clients()``'s answer, printed as a table with what was left out under it."""

    def __repr__(self):
        rows = [(c.get("client_id"), c.get("account"), c.get("username"), c.get("peer"),
                 c.get("process"), c.get("clean"), c.get("subscriptions"), c.get("inflight"),
                 c.get("queued")) for c in self.get("clients", ())]
        lines = list(table(("CLIENT ID", "ACCOUNT", "USERNAME", "PEER", "PROCESS", "CLEAN",
                            "SUBS", "INFLIGHT", "QUEUED"), rows))
        lines.append(f"{len(rows)} shown of {self.get('matched', 0)} matched")
        for process, why in sorted(self.get("unanswered", {}).items()):
            lines.append(f"{process} did not answer: {why}")
        return "\n".join(lines)


class Report(dict):
    """The report's document, printed as ``mqttd report`` prints it."""

    def __repr__(self):
        return "\n".join(reports.report_lines(self))


def _target(gate, client_id, ip, username):
    """(kind, value as the ban holds it: a device token's hash, ``Gate.ban_value``)."""
    given = [(kind, value) for kind, value in
             (("clientid", client_id), ("ip", ip), ("username", username)) if value is not None]
    if len(given) != 1:
        raise HelperError("name exactly one of client_id=, ip=, username=")
    kind, value = given[0]
    try:
        return kind, gate.ban_value(kind, value)
    except AccountsError as e:
        raise HelperError(str(e)) from None


def _ticket(ticket):
    return {"client_id": ticket.client_id, "account": ticket.account, "peer": ticket.host}


class _Any:
    def __repr__(self):
        return "any"


_ANY = _Any()  # kick()'s default: every account


class Helpers:
    """The helpers of one manhole session of ``who`` (the user who logged in)."""

    def __init__(self, view, who):
        self._view = view
        self._who = who

    def help(self):
        """This list."""
        lines = ["Helpers (each answers for the whole appliance; one returning a Deferred "
                 "is waited for):"]
        for name in HELPERS:
            function = getattr(self, name)
            doc = (inspect.getdoc(function) or "").split("\n\n")[0]
            doc = doc.replace("\n", " ").replace("``", "")
            lines.append(f"  {name}{inspect.signature(function)}: {doc}")
        return Text("\n".join(lines))

    def stats(self, prefix=""):
        """Every non-zero figure of the tree, summed over its processes, whose name
        starts with ``prefix`` (e.g. "edge_", "webhook_"): {series: value}."""
        return Shown(reports.series(self._view.families(), prefix))

    def clients(self, ip=None, account=None, client_id=None, limit=100):
        """The live connections of every worker that match: ``ip`` (an address or a
        network), ``account``, ``client_id`` (exact, or a glob: "dev-*"). Deferred of
        {"clients": [...], "matched": N, "unanswered": {worker: why}}."""
        if not isinstance(limit, int) or not 0 <= limit <= MAX_CLIENTS:
            raise HelperError(f"limit: must be an integer 0..{MAX_CLIENTS}, got {limit!r}")
        try:
            wanted = ClientFilter(ip, account, client_id)
        except ValueError as e:
            raise HelperError(str(e)) from None
        return Later(self._view.clients(wanted, limit).addCallback(Clients), "clients")

    def kick(self, client_id, account=_ANY):
        """Close the live connection of ``client_id`` (in every account that has one,
        or only in ``account``; None: the one without an account) on whichever worker
        holds it, as a ban would (its will is published). The connections kicked."""
        if not isinstance(client_id, str):
            raise HelperError(f"client_id: must be a string, got {client_id!r}")
        kicked = self._view.gate.kick_client(
            client_id, "manhole", None if account is _ANY else account,
            any_account=account is _ANY)
        log.info("manhole {who}: kick({client_id!r}): {count} connection(s)", who=self._who,
                 client_id=client_id, count=len(kicked))
        return Listing(_ticket(ticket) for ticket in kicked)

    def ban(self, client_id=None, ip=None, username=None, seconds=None, reason=""):
        """Ban one client id, IP address or network, or username (a token too: banned,
        shown and logged by its hash, never whole), for ``seconds`` or until unbanned:
        in force at once, stored, and every live connection it matches kicked, on any
        worker."""
        kind, value = _target(self._view.gate, client_id, ip, username)
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise HelperError(f"seconds: must be a number > 0 or None, got {seconds!r}")
        if not isinstance(reason, str):
            raise HelperError(f"reason: must be a string, got {reason!r}")
        now = self._view.clock.seconds()
        record = BanRecord(kind, value, f"manhole {self._who}", reason, now,
                           None if seconds is None else now + seconds)
        self._view.gate.ban(record)
        log.info("manhole {who}: ban {kind} {value} ({lasting})", who=self._who, kind=kind,
                 value=value, lasting="until removed" if seconds is None else f"{seconds} s")
        return Shown(reports.ban_dict(record))

    def unban(self, client_id=None, ip=None, username=None):
        """Remove the ban of one client id, IP or network, or username (a token, or
        its hash as ``bans()`` shows it). Deferred of whether there was one; the gate
        lifts it at its next look at the store."""
        kind, value = _target(self._view.gate, client_id, ip, username)
        log.info("manhole {who}: unban {kind} {value}", who=self._who, kind=kind, value=value)
        interval = self._view.config.auth.reload_interval
        d = maybeDeferred(self._view.store.remove_ban, kind, value)
        return Later(d.addCallback(lambda removed: Shown(
            {"kind": kind, "value": value, "removed": removed,
             "lifts": f"within auth.reload_interval ({interval:g} s)" if removed else None})),
            "unban")

    def bans(self):
        """The bans in force now, by kind and value."""
        records = sorted(self._view.gate.bans.active(), key=lambda r: (r.kind, r.value))
        return Listing(reports.ban_dict(record) for record in records)

    def accounts(self):
        """Deferred of every account with its quota and the client ids it has connected."""
        tickets = self._view.gate.tickets
        d = maybeDeferred(self._view.store.accounts)
        return Later(d.addCallback(lambda records: Listing(
            {"name": r.name, "active": r.active, "max_connections": r.max_connections,
             "connected": tickets.seats_taken(r.name), "devices": r.devices,
             "licence": r.licence} for r in records)), "accounts")

    def top_ips(self, limit=10):
        """The addresses with the most connections open, and with the most connects
        over the last minute."""
        return Shown(reports.top_ips(self._view, self._limit(limit)))

    def webhook(self):
        """The webhook's health: target, pool, latency, retries, its figures."""
        return Shown(reports.webhook_section(self._view, list(self._view.families())))

    def report(self):
        """The incident report, as ``mqttd report`` prints it (a dict: report()["top_ips"])."""
        return Report(reports.build_report(self._view))

    def trace(self, client_id):
        """The recent events of ``client_id`` (accept, auth, connect, publishes, acks,
        disconnect), oldest first, from the per-client trace window."""
        recent = self._view.recent_events
        if recent is None:
            return Text("trace not enabled")
        return Later(maybeDeferred(recent, client_id).addCallback(
            lambda events: Listing(events) if isinstance(events, list) else events), "trace")

    def trace_add(self, client_id=None, username=None, ip=None, seconds=DEFAULT_RULE_SECONDS):
        """Trace every publish and ack of one client id, username (a token user's token
        prefix) or IP address or network, for ``seconds`` (None: until trace_rm), on
        every worker within manage.trace_poll_interval. Deferred of the rule."""
        trace = self._trace()
        kind, value = self._rule(client_id, username, ip)
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise HelperError(f"seconds: must be a number > 0 or None, got {seconds!r}")
        log.info("manhole {who}: trace_add {kind} {value} ({lasting})", who=self._who,
                 kind=kind, value=value,
                 lasting="until removed" if seconds is None else f"{seconds} s")
        d = trace.trace_add(**{kind: value}, seconds=seconds, who=f"manhole {self._who}")
        return Later(d.addCallbacks(Shown, _helper_error), "trace_add")

    def trace_rm(self, client_id=None, username=None, ip=None):
        """Remove the trace rule of one client id, username or IP (as trace_add named
        it). Deferred of whether there was one."""
        trace = self._trace()
        kind, value = self._rule(client_id, username, ip)
        log.info("manhole {who}: trace_rm {kind} {value}", who=self._who, kind=kind,
                 value=value)
        return Later(trace.trace_rm(**{kind: value}).addErrback(_helper_error), "trace_rm")

    def trace_list(self):
        """The trace rules in force (kind, value, who, at, until), as last read."""
        return Listing(self._trace().trace_list())

    def _trace(self):
        if self._view.trace is None:
            raise HelperError("trace not enabled: set manage.trace_file")
        return self._view.trace

    @staticmethod
    def _rule(client_id, username, ip):
        try:
            return one_rule(client_id, username, ip)
        except AccountsError as e:
            raise HelperError(str(e)) from None

    @staticmethod
    def _limit(limit):
        if not isinstance(limit, int) or not 0 < limit <= MAX_CLIENTS:
            raise HelperError(f"limit: must be an integer 1..{MAX_CLIENTS}, got {limit!r}")
        return limit


def _helper_error(failure):
    """A store's refusal (AccountsError: too many rules, a bad value) as one line."""
    failure.trap(AccountsError)
    raise HelperError(str(failure.value))


def namespace(view, who):
    """The locals of one manhole session: the helpers, bound to ``view`` and ``who``."""
    helpers = Helpers(view, who)
    return {name: getattr(helpers, name) for name in HELPERS}
