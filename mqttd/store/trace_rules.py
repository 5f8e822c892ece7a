"""The ``trace_rules`` table: the clients whose every publish the per-client trace records.

Written by the operator (``mqttd trace add|rm``, or the manhole through
``mqttd.manage.trace_control``), read by the appliance's poller
(``mqttd.manage.trace_sync``), which applies a change within a tick. One row per (kind,
value); adding again replaces it (a new ``until``). A rule matches a client by its client
id, its username (a static user's name, or a token user's token prefix: a token is never
stored), or its IP address within an address or CIDR network (spelled canonically, as
for bans).

At most ``MAX_RULES`` rules: the whole set travels to every worker in one channel
message and is matched at every CONNECT, so it is kept to what an operator types.
"""
import attrs

from mqttd.store.accounts import AccountsError
from mqttd.store.bans import canonical_ban_value

__all__ = ["KINDS", "MAX_RULES", "TraceRule", "add_rule", "canonical_rule_value",
           "list_rules", "remove_rule", "trace_version"]

KINDS = ("client_id", "username", "ip")
MAX_RULES = 1000


@attrs.frozen(slots=True)
class TraceRule:
    """Trace every publish of the clients ``kind`` = ``value`` names, from ``at`` until
    ``until`` (unix seconds; None: until removed); ``who`` made it."""

    kind: str
    value: str
    who: str
    at: float
    until: float | None = None

    def active(self, now):
        return self.until is None or self.until > now


def canonical_rule_value(kind, value):
    """``value`` as stored for a rule of ``kind``; AccountsError if it is not one."""
    if kind not in KINDS:
        raise AccountsError(f"bad trace rule kind {kind!r}: must be one of {', '.join(KINDS)}")
    if not isinstance(value, str) or not value:
        raise AccountsError(f"a {kind} trace rule needs a non-empty value, got {value!r}")
    if kind == "ip":
        try:
            return canonical_ban_value("ip", value)
        except AccountsError as e:
            raise AccountsError(str(e).replace("ip ban:", "ip trace rule:")) from None
    return value


def add_rule(conn, rule):
    """Store ``rule`` (replacing one of the same kind and value); the rule as stored.
    AccountsError for a bad value, or past ``MAX_RULES``."""
    value = canonical_rule_value(rule.kind, rule.value)
    if rule.until is not None and not rule.until > rule.at:
        raise AccountsError(f"trace rule until ({rule.until}) must be after at ({rule.at})")
    count = conn.execute("SELECT count(*) FROM trace_rules WHERE NOT (kind = ? AND value = ?)",
                         (rule.kind, value)).fetchone()[0]
    if count >= MAX_RULES:
        raise AccountsError(f"{count} trace rules already: at most {MAX_RULES} (remove some "
                            f"with mqttd trace rm)")
    conn.execute(
        "INSERT INTO trace_rules (kind, value, who, at, until) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, value) DO UPDATE SET who = excluded.who, at = excluded.at, "
        "until = excluded.until", (rule.kind, value, rule.who, rule.at, rule.until))
    return attrs.evolve(rule, value=value)


def remove_rule(conn, kind, value):
    """Remove the rule of ``kind`` and ``value``: True, or False if there was none."""
    value = canonical_rule_value(kind, value)
    return conn.execute("DELETE FROM trace_rules WHERE kind = ? AND value = ?",
                        (kind, value)).rowcount > 0


def list_rules(conn, now=None):
    """Every rule, by kind and value; with ``now``, only those in force then."""
    select = "SELECT kind, value, who, at, until FROM trace_rules"
    if now is None:
        rows = conn.execute(f"{select} ORDER BY kind, value")
    else:
        rows = conn.execute(f"{select} WHERE until IS NULL OR until > ? ORDER BY kind, value",
                            (now,))
    return [TraceRule(*row) for row in rows.fetchall()]


def trace_version(conn):
    """The counter every change of ``trace_rules`` raises (schema step 5)."""
    return conn.execute("SELECT version FROM trace_version").fetchone()[0]
