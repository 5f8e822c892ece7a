"""SIGHUP: reread the configuration file and apply what can change without a restart.

The door's limits (``[limits]``: caps, rates, bans, allowlist; and
``broker.max_connections``) apply to connections from then on; no connection is
dropped. Any other key that changed is named in the log as needing a restart, and a
file that does not validate changes nothing (the error is logged, the appliance runs
on). Both the single process and the master reload this way.

Where they apply is the service's ``apply_reload(new)``: the single process's door and
broker (``mqttd.service.apply_reload``), or the master's door and, by a message on each
channel, every worker's broker (``mqttd.tree.master``). ``broker.max_connections`` is
checked in both places, the door's count and each broker's own; a lowered cap keeps
the connections open and refuses new ones until fewer are open, as a raised one lets
them in, in both. ``[limits]`` is the door's alone (no worker has a door).
"""
import signal

import attrs
from twisted.application.service import Service
from twisted.logger import Logger

from mqttd.config import load_config
from mqttd.errors import ConfigError

log = Logger()

RELOADABLE = ("limits", "broker.max_connections")


def changed_keys(old, new):
    """The dotted keys whose values differ between two Configs."""
    keys = []
    for section in attrs.fields(type(old)):
        a, b = getattr(old, section.name), getattr(new, section.name)
        for field in attrs.fields(type(a)):
            if getattr(a, field.name) != getattr(b, field.name):
                keys.append(f"{section.name}.{field.name}")
    return keys


def reloaded(config, new):
    """``config`` with what a reload applies taken from ``new`` (RELOADABLE)."""
    return attrs.evolve(config, limits=new.limits, broker=attrs.evolve(
        config.broker, max_connections=new.broker.max_connections))


def _reloadable(key):
    return any(key == r or key.startswith(r + ".") for r in RELOADABLE)


class Reloader(Service):
    """Reloads ``path`` (with the command line's ``overrides``) on SIGHUP: ``apply(new)``
    applies what RELOADABLE names of the new Config, or raises ValueError having
    changed nothing."""

    def __init__(self, reactor, path, overrides, config, apply, load=load_config):
        self._reactor = reactor
        self._path = path
        self._overrides = overrides
        self.config = config
        self._apply = apply
        self._load = load
        self._previous = None

    def startService(self):
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
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
        try:
            self._apply(new)
        except ValueError as e:  # load_config checked the networks already; defensive
            log.error("SIGHUP: limits not reloaded: {error}", error=str(e))
            return None
        applied = [key for key in keys if _reloadable(key)]
        self.config = reloaded(self.config, new)
        log.info("SIGHUP: configuration reloaded; applied: {applied}",
                 applied=", ".join(applied) or "nothing changed")
        if later:
            log.warn("SIGHUP: these keys changed but apply only after a restart: {keys}",
                     keys=", ".join(later))
        return applied
