"""SIGHUP: reread the configuration file and apply what can change without a restart.

The door's limits (``[limits]``: caps, rates, bans, allowlist; and
``broker.max_connections``) apply to connections from then on; no connection is
dropped; ``broker.max_connections`` is checked by each broker too (the single
process's; in the tree each worker's, sent a "max_connections" message by the master,
and briefed with it when started later), where a lowered cap keeps the connections
open and refuses new ones until fewer are open. The gate's ``[auth]`` keys (static users, ``allow_anonymous``,
``require_password``, ``rate_per_token`` and its burst) and ``[flapping_detect]`` apply
from the next CONNECT and disconnect (``Gate.reloading``: it kicks the live clients the
new users or anonymous rule refuse); the ``[[auth.acl]]`` rules and ``acl_no_match``
from the next PUBLISH and SUBSCRIBE of every connection, the live ones too, in every
broker that holds them (the single process's; in the tree each worker's, sent an "acl"
message by the master). Any other key that changed is named in the log as needing a
restart.

All or nothing: a file that does not validate changes nothing (the error is logged,
the appliance runs on its old configuration); past validation every part is made
ready first (``parts``: ``prepare(old, new)`` answers the call that puts it in force)
and only then put in force. Both the single process and the master reload this way.
"""
import signal

import attrs
from twisted.application.service import Service
from twisted.logger import Logger

from mqttd.broker.acl import AclRules
from mqttd.config import load_config
from mqttd.config_sections import AclRule
from mqttd.edge.handoff_wire import encode_message
from mqttd.errors import ConfigError

log = Logger()

RELOADABLE = ("limits", "broker.max_connections", "auth.allow_anonymous", "auth.users",
              "auth.require_password", "auth.rate_per_token", "auth.rate_burst",
              "auth.acl", "auth.acl_no_match", "flapping_detect")
ACL_MESSAGE = "acl"
"""The master's message to its workers: new ACL rules (``acl_payload``)."""


def changed_keys(old, new):
    """The dotted keys whose values differ between two Configs."""
    keys = []
    for section in attrs.fields(type(old)):
        a, b = getattr(old, section.name), getattr(new, section.name)
        for field in attrs.fields(type(a)):
            if getattr(a, field.name) != getattr(b, field.name):
                keys.append(f"{section.name}.{field.name}")
    return keys


def _reloadable(key):
    return any(key == r or key.startswith(r + ".") for r in RELOADABLE)


def running_config(old, new):
    """``old`` with ``new``'s values of the reloadable keys: what runs after a reload."""
    sections = {}
    for section in attrs.fields(type(old)):
        values, fresh = getattr(old, section.name), getattr(new, section.name)
        sections[section.name] = attrs.evolve(values, **{
            field.name: getattr(fresh, field.name) for field in attrs.fields(type(values))
            if _reloadable(f"{section.name}.{field.name}")})
    return attrs.evolve(old, **sections)


def _nothing():
    pass


def max_connections_part(apply_cap):
    """The part of a broker's ``max_connections`` (the door checks it too, and the
    Reloader reloads the door): ``apply_cap(n)`` once it changed. A lowered cap keeps
    the connections open and refuses new ones until fewer are open."""
    def prepare(old, new):
        cap = new.broker.max_connections
        if cap == old.broker.max_connections:
            return _nothing
        return lambda: apply_cap(cap)
    return prepare


def acl_changed(old, new):
    return (old.auth.acl, old.auth.acl_no_match) != (new.auth.acl, new.auth.acl_no_match)


def acl_part(apply_rules):
    """The part of a process whose broker holds the ACL: ``apply_rules(AclRules)`` (its
    ``Tenancy.reload``) once the new rules are compiled; nothing if they did not change."""
    def prepare(old, new):
        if not acl_changed(old, new):
            return _nothing
        rules = AclRules(new.auth.acl, new.auth.acl_no_match)
        return lambda: apply_rules(rules)
    return prepare


def acl_payload(auth):
    """The "acl" message of ``auth``'s rules; ValueError if it cannot go on the channel."""
    payload = {"rules": [attrs.asdict(rule) for rule in auth.acl],
               "no_match": auth.acl_no_match}
    encode_message(ACL_MESSAGE, payload)
    return payload


def acl_from_payload(payload):
    """The AclRules an "acl" message carries (KeyError or TypeError if it is not one)."""
    return AclRules([AclRule(**rule) for rule in payload["rules"]], payload["no_match"])


class Reloader(Service):
    """Reloads ``path`` (with the command line's ``overrides``) into ``door`` and the
    ``parts`` (each ``prepare(old, new)``: see the module) on SIGHUP."""

    def __init__(self, reactor, path, overrides, config, door, parts=(), load=load_config):
        self._reactor = reactor
        self._path = path
        self._overrides = overrides
        self.config = config
        self._door = door
        self._parts = tuple(parts)
        self._load = load
        self._previous = None  # the SIGHUP handler before ours
        self._catching = False

    def privilegedStartService(self):
        # As early as the service tree allows: until then a SIGHUP (a reload while the
        # appliance starts) ends the process, SIGHUP's default.
        super().privilegedStartService()
        self._catch()

    def startService(self):
        super().startService()
        self._catch()

    def _catch(self):
        if not self._catching:
            self._previous = signal.signal(signal.SIGHUP, self._on_signal)
            self._catching = True

    def stopService(self):
        super().stopService()
        if self._catching:
            signal.signal(signal.SIGHUP, self._previous or signal.SIG_DFL)
            self._catching = False
            self._previous = None

    def _on_signal(self, signum, frame):
        self._reactor.callFromThread(self.reload)

    def reload(self):
        """Reread and apply; returns the keys applied (None: the file was refused)."""
        try:
            new = self._load(self._path, self._overrides)
        except ConfigError as e:
            log.error("SIGHUP: configuration not reloaded, still running on the old one: "
                      "{error}", error=str(e))
            return None
        keys = changed_keys(self.config, new)
        later = [key for key in keys if not _reloadable(key)]
        running = running_config(self.config, new)
        try:  # load_config checked everything already: defensive
            ready = [prepare(self.config, running) for prepare in self._parts]
            self._door.reload(running.limits, running.broker.max_connections)
        except ValueError as e:
            log.error("SIGHUP: configuration not reloaded, still running on the old one: "
                      "{error}", error=str(e))
            return None
        for apply in ready:
            apply()
        applied = [key for key in keys if _reloadable(key)]
        self.config = running
        log.info("SIGHUP: configuration reloaded; applied: {applied}",
                 applied=", ".join(applied) or "nothing changed")
        if later:
            log.warn("SIGHUP: these keys changed but apply only after a restart: {keys}",
                     keys=", ".join(later))
        return applied
