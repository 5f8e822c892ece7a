"""The operator's checks, in the one process that sees the whole tree (the master, or
the single process): the webhook guardrails, the canary, the devices gone silent, and
the ``$SYS/broker`` topics. What ``report()`` and the manhole read (``alerts()``,
``gaps()``, ``canary_status()``) is here.

Each broker process also watches its own devices (``watch_broker``: a ``GapWatch`` on
its ``submit``); a worker sends its list with its metrics snapshot (``details``), and
this side merges them. The roles wire it in a few lines: ``with_canary(config)`` before
anything reads the config (the canary's user and ACL rule), ``watch_broker`` for each
broker, ``Watch`` last.
"""
import os

import attrs
from twisted.application.service import MultiService
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mqttd.config_sections import AclRule, User
from mqttd.errors import ConfigError
from mqttd.ingest.credentials import new_secret
from mqttd.manage.canary import CANARY_CLIENT_ID, CANARY_TOPIC, CANARY_USERNAME, Canary
from mqttd.manage.canary_client import target
from mqttd.manage.gaps import GapWatch, merge_gaps
from mqttd.manage.guardrails import Alert, Guardrails
from mqttd.manage.sys_topics import SysTree, totals
from mqttd.store.canary_rows import CanaryRows
from mqttd.store.sqlite import DB_FILENAME

__all__ = ["TICK", "Watch", "keeping_canary", "watch_broker", "with_canary"]

log = Logger()

TICK = 1.0
"""Seconds between two evaluations of the alert rules (the children report as often)."""


_RULE = AclRule(user=CANARY_USERNAME, topic=CANARY_TOPIC, action="publish",
                permission="allow")


def with_canary(config, password=None):
    """``config`` with the canary's static user (``password``, or one made now) and an
    ACL rule that lets it publish its topic whatever the other rules say, when
    ``manage.canary_interval`` is set; else ``config`` itself. A config that has them
    already is returned as it is (the roles apply it again: idempotent)."""
    if not config.manage.canary_interval:
        return config
    return _add_canary(config, password)


def _add_canary(config, password):
    auth = config.auth
    for index, user in enumerate(auth.users):
        if user.username == CANARY_USERNAME:
            if auth.acl[:1] == (_RULE,) and password in (None, user.password):
                return config  # applied already
            raise ConfigError(f"auth.users[{index}].username: {CANARY_USERNAME!r} is the "
                              f"canary's (manage.canary_interval); choose another name")
    user = User(username=CANARY_USERNAME, password=password or new_secret())
    return attrs.evolve(config, auth=attrs.evolve(
        auth, users=auth.users + (user,), acl=(_RULE,) + auth.acl))


def keeping_canary(load, config):
    """``load`` (``load_config``'s signature: SIGHUP's reread) whose configurations keep
    the running canary's user, password and rule (``config``'s): a reload of
    ``[auth]`` must neither kick the canary nor refuse it, and ``canary_interval``
    itself changes only at a restart."""
    if not config.manage.canary_interval:
        return load
    password = _canary_password(config)

    def reload(path, overrides=None):
        return _add_canary(load(path, overrides), password)
    return reload


def _canary_password(config):
    for user in config.auth.users:
        if user.username == CANARY_USERNAME:
            return user.password
    raise ConfigError("manage.canary_interval: the configuration has no canary user "
                      "(with_canary was not applied)")


def watch_broker(config, clock, broker, process):
    """Watch ``broker``'s devices for gaps (``manage.gap_factor``; None if off): its
    ``submit`` tells a GapWatch of each message first."""
    manage = config.manage
    if not manage.gap_factor:
        return None
    watch = GapWatch(clock, manage.gap_factor, manage.gap_max_devices, broker.metrics,
                     process, exempt=(CANARY_CLIENT_ID,))
    broker.submit = watch.observing(broker.submit)
    return watch


def gap_details(watch):
    """The ``details`` a broker's metrics reporter sends: check, then its list."""
    if watch is None:
        return {}
    watch.check()
    return {"gaps": watch.gaps()}


class Watch(MultiService):
    """``tree_metrics``: the tree's figures (``mqttd.manage.tree_metrics``); ``metrics``
    this process's registry. ``sys_out(values)`` hands the ``$SYS`` values to every
    broker (None: none to hand to). ``listeners()``: (endpoint string, bound address)
    of each MQTT listener, for the canary; ``ready()`` whether the appliance is up
    (``health()[0]``: the canary starts once it first is). ``local_gaps``: this
    process's own GapWatch (the single process); the tree's workers send theirs."""

    def __init__(self, reactor, config, tree_metrics, metrics, sys_out=None,
                 listeners=lambda: (), ready=None, local_gaps=None):
        super().__init__()
        self._reactor = reactor
        self._tree = tree_metrics
        self._local_gaps = local_gaps
        self._sys_out = sys_out
        builtin = config.ingest.enabled and not config.webhook.url
        self.guardrails = Guardrails(reactor, config.webhook, config.ingest, metrics,
                                     builtin=builtin)
        self._tick = LoopingCall(self.evaluate)
        self._tick.clock = reactor
        manage = config.manage
        self.canary = None
        if manage.canary_interval:
            rows = None
            if builtin:  # the rows are in this data dir's SQLite
                rows = CanaryRows(reactor, os.path.join(config.server.data_dir, DB_FILENAME))
            self.canary = Canary(reactor, manage.canary_interval,
                                 lambda: target(reactor, listeners()),
                                 _canary_password(config), rows, metrics, ready)
            self.canary.setServiceParent(self)
        self._sys = None
        self._sys_interval = manage.sys_interval
        if manage.sys_interval and sys_out is not None:
            self._sys = SysTree(reactor)
            self._sys_loop = LoopingCall(self.publish_sys)
            self._sys_loop.clock = reactor

    def startService(self):
        super().startService()
        self._tick.start(TICK, now=False)
        if self._sys is not None:
            self._sys_loop.start(self._sys_interval, now=False)

    def stopService(self):
        for loop in (self._tick, getattr(self, "_sys_loop", None)):
            if loop is not None and loop.running:
                loop.stop()
        return super().stopService()

    def evaluate(self):
        """Every second: the alert rules over the tree's figures, this process's gaps.
        Never raises (a LoopingCall that raised would stop for good)."""
        try:
            if self._local_gaps is not None:
                self._local_gaps.check()
            self.guardrails.evaluate(self._tree.by_process())
        except Exception:
            log.failure("evaluating the alert rules failed")

    def publish_sys(self):
        try:
            self._sys_out(self._sys.values(totals(self._tree.families())))
        except Exception:
            log.failure("publishing the $SYS topics failed")

    # -- what report() and the manhole read ----------------------------------------------

    def alerts(self):
        """[dict] of the alerts that hold: the guardrails', and the canary's while its
        checks fail (see ``mqttd.manage.guardrails.Alert``)."""
        alerts = [alert.as_dict() for alert in self.guardrails.alerts()]
        status = self.canary_status()
        if status.get("state") == "failing":
            alerts.append(Alert(
                "canary", self._tree.name, "",
                f"the canary's checks fail since {status['failing_since']:.0f}: last "
                f"{status['last_result']} (see the webhook and ingest figures)",
                1, 0, status["failing_since"]).as_dict())
        return alerts

    def gaps(self):
        """[dict] of the devices silent past manage.gap_factor times their median
        interval, the most recently quiet first (``mqttd.manage.gaps``)."""
        lists = [entries for _, entries in self._tree.details("gaps")]
        if self._local_gaps is not None:
            lists.append(self._local_gaps.gaps())
        return merge_gaps(lists)

    def canary_status(self):
        """The canary's ``status()`` (``{"enabled": False}`` when it is off)."""
        if self.canary is None:
            return {"enabled": False}
        return self.canary.status()
