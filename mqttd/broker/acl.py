"""Static ACL rules (``[[auth.acl]]``, as mosquitto's acl_file and EMQX's authorization).

Each rule names who it is for (one user, one account, anonymous clients, or all), a
topic filter in the client's own view (``%c`` and ``%u`` become its client id and
username, as mosquitto's patterns), the action (publish, subscribe or all) and allow or
deny. A client's rules are the ones naming it, in file order; the first that applies
decides, and ``auth.acl_no_match`` decides when none does.

A publish's topic is one topic: a rule applies when its filter matches it. A
subscription's filter stands for every topic it can match, so the reading is the secure
one: an ALLOW rule applies only when its filter covers every topic the subscription can
match (``covers``: ``a/#`` allows ``a/b/+``, ``a/+`` does not allow ``a/#``), and a DENY
rule applies as soon as the two can match one common topic (``overlaps``: ``a/secret``
denies ``a/#``). Both follow the ``$`` rule: a wildcard first level matches no ``$``
topic [MQTT-4.7.2-1].

Rules are compiled once at start (``AclRules``) and once more per connection, for the
client's own names (``for_client``): a publish walks a short tuple of level lists.
"""
__all__ = ["AclRules", "ClientAcl", "PUBLISH", "SUBSCRIBE", "covers", "overlaps"]

PUBLISH = 1
SUBSCRIBE = 2
_ACTIONS = {"publish": PUBLISH, "subscribe": SUBSCRIBE, "all": PUBLISH | SUBSCRIBE}
_WILDCARDS = ("+", "#")


def _dollar(level):
    """A literal first level that wildcards do not reach [MQTT-4.7.2-1]."""
    return level not in _WILDCARDS and level.startswith("$")


def overlaps(a, b):
    """Can filters ``a`` and ``b`` (lists of levels; a topic is a filter without
    wildcards) match one common topic? For a topic, that is: does the filter match it."""
    n = min(len(a), len(b))
    for i in range(n):
        x = a[i]
        y = b[i]
        if x == "#" or y == "#":
            return not (i == 0 and (_dollar(x) or _dollar(y)))
        if x == "+" or y == "+":
            if i == 0 and (_dollar(x) or _dollar(y)):
                return False
            continue
        if x != y:
            return False
    if len(a) == len(b):
        return True
    longer = a if len(a) > len(b) else b
    # "a/#" also matches "a", its parent level [MQTT-4.7.1-2].
    return len(longer) == n + 1 and longer[n] == "#"


def covers(rule, sub):
    """Does filter ``rule`` match every topic that filter ``sub`` can match?"""
    for i, x in enumerate(rule):
        if i == len(sub):  # sub ends here: only a last "#" also matches the parent level
            return x == "#" and i == len(rule) - 1
        y = sub[i]
        if x == "#":
            return not (i == 0 and _dollar(y))
        if y == "#":
            return False
        if x == "+":
            if i == 0 and _dollar(y):
                return False
            continue
        if y == "+" or x != y:
            return False
    return len(rule) == len(sub)


def _substitute(topic, client_id, username):
    """The rule's filter for this client, or None: a rule with ``%u`` is for clients
    with a username, and a name holding a wildcard or a "/" would widen the rule, so
    the rule does not apply to it (mosquitto refuses such patterns too)."""
    for token, value in (("%c", client_id), ("%u", username)):
        if token in topic:
            if value is None or "+" in value or "#" in value or "/" in value:
                return None
            topic = topic.replace(token, value)
    return topic


class ClientAcl:
    """The ACL rules of one connection: (actions, allow, filter levels), in order."""

    __slots__ = ("_rules", "_no_match")

    def __init__(self, rules, no_match):
        self._rules = rules
        self._no_match = no_match

    def may_publish(self, topic):
        levels = topic.split("/")
        for actions, allow, rule in self._rules:
            if actions & PUBLISH and overlaps(rule, levels):
                return allow
        return self._no_match

    def may_subscribe(self, topic_filter):
        levels = topic_filter.split("/")
        for actions, allow, rule in self._rules:
            if actions & SUBSCRIBE and (covers(rule, levels) if allow
                                        else overlaps(rule, levels)):
                return allow
        return self._no_match


class AclRules:
    """``auth.acl`` and ``auth.acl_no_match``, compiled (read duck-typed: each rule has
    user, account, anonymous, all, topic, action, permission)."""

    __slots__ = ("_rules", "_no_match")

    def __init__(self, rules, no_match="allow"):
        self._no_match = no_match == "allow"
        compiled = []
        for rule in rules:
            if rule.user:
                who = ("user", rule.user)
            elif rule.account:
                who = ("account", rule.account)
            elif rule.anonymous:
                who = ("anonymous", None)
            else:
                who = ("all", None)
            compiled.append((who, rule.topic, _ACTIONS[rule.action or "all"],
                             rule.permission == "allow"))
        self._rules = tuple(compiled)

    def __len__(self):
        return len(self._rules)

    def for_client(self, client_id, username, account):
        """The ClientAcl of a connection, or None when no rule names it and an
        unmatched topic is allowed (nothing to check)."""
        mine = []
        for (kind, name), topic, actions, allow in self._rules:
            if kind == "user" and name != username or kind == "account" and name != account:
                continue
            if kind == "anonymous" and username is not None:
                continue
            topic = _substitute(topic, client_id, username)
            if topic is not None:
                mine.append((actions, allow, topic.split("/")))
        if not mine and self._no_match:
            return None
        return ClientAcl(tuple(mine), self._no_match)
