"""The rules of the ``[auth]`` section beyond types and bounds: users' accounts, ACL rules.

Apart from ``mqttd.config_checks`` because the gate's keys (tokens, quotas, flapping)
join them; each rule raises a ConfigError naming the key to change, e.g.
``auth.acl[2].topic: '#' must be the whole last level``.
"""
from mqttd.errors import ConfigError
from mqttd.namespace import ACCOUNT_NAME, valid_account

__all__ = ["check_auth"]

_WHO = ("user", "account", "anonymous", "all")


def check_auth(auth):
    for i, user in enumerate(auth.users):
        if user.account and not valid_account(user.account):
            raise ConfigError(f"auth.users[{i}].account: must match {ACCOUNT_NAME.pattern} "
                              f"(user {user.username!r}), got {user.account!r}")
    for i, rule in enumerate(auth.acl):
        _check_rule(f"auth.acl[{i}]", rule)


def _check_rule(where, rule):
    named = [key for key in _WHO if getattr(rule, key)]
    if len(named) != 1:
        raise ConfigError(f"{where}: must name exactly one of user = \"name\", account = "
                          f"\"name\", anonymous = true, all = true, got "
                          f"{', '.join(named) or 'none'}")
    if rule.account and not valid_account(rule.account):
        raise ConfigError(f"{where}.account: must match {ACCOUNT_NAME.pattern}, got "
                          f"{rule.account!r}")
    if not rule.permission:
        raise ConfigError(f"{where}.permission: required: allow or deny")
    problem = _filter_problem(rule.topic)
    if problem is not None:
        raise ConfigError(f"{where}.topic: {problem}, got {rule.topic!r}")


def _filter_problem(topic):
    """What makes ``topic`` no MQTT topic filter (the codec's rules, which this config
    module may not import), or None."""
    if not topic:
        return "must be a topic filter (not empty)"
    if "\x00" in topic:
        return "must not contain U+0000"
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return "must be at most 65535 UTF-8 bytes"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None
