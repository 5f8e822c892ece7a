"""The canary: a QoS 1 message through a real listener every ``manage.canary_interval``,
and its row looked up in SQLite. The one check that sees the whole data path the way a
device does: accept, the gate, the hand-off, the worker, the webhook, the commit.

The incident's team learned of lost data from their users. Here a check that fails is
an alert: logged once when the checks start failing and once when they pass again
(not at every check), counted (``manage_canary_checks{result}``,
``manage_canary_failing``) and in ``status()`` for ``report()``. A check's results:

- ``ok``: PUBACK, and the row is in ``messages`` (or only the PUBACK, when
  ``webhook.url`` stores elsewhere and there is no local row to find);
- ``no ack``: no PUBACK within one interval (the webhook or the ingest stalled);
- ``not stored``: acknowledged and not in SQLite: the promise broken;
- ``refused``: a CONNACK refusal (a ban of its client id, say);
- ``unreachable``: no connection, or none answered within an interval;
- ``check failed``: the lookup itself failed (SQLite busy past its timeout).

A check has one interval: the next one ends it, so a stall is an alert within two
intervals of its start. The connection is kept between checks (a device's way, and a
reconnect per check would feed the flapping detector); only the broker closes it (its
``webhook.ack_timeout``), and then the next check connects again.

Its rows stay out of the customers' way: client id and username ``$mqttd-canary``,
topic ``$mqttd/canary`` (a ``$`` topic: no ``#`` subscriber receives it), no account, one
row per interval (``DELETE FROM messages WHERE client_id = '$mqttd-canary'`` prunes them).
Its password is made at every start, known to the process that runs it and the gate.
"""
import json
import os

from twisted.application.service import Service
from twisted.internet.defer import fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mqttd.manage.canary_client import Refused, client_factory

__all__ = ["CANARY_CLIENT_ID", "CANARY_TOPIC", "CANARY_USERNAME", "Canary"]

log = Logger()

CANARY_CLIENT_ID = "$mqttd-canary"
CANARY_USERNAME = "$mqttd-canary"
CANARY_TOPIC = "$mqttd/canary"
_SINCE_MARGIN = 60.0  # seconds before its publish a row may say it was received (clocks)


class _Check:
    __slots__ = ("seq", "started", "stage", "payload")

    def __init__(self, seq, started):
        self.seq = seq
        self.started = started
        self.stage = "unreachable"  # what it is waiting for, named as its result
        self.payload = None


class Canary(Service):
    """``where()``: the client endpoint to connect to (None while no listener is
    bound); ``rows``: a ``mqttd.store.canary_rows.CanaryRows``, or None (no local
    rows to find). ``ready()``: whether the appliance has come up (/healthz): the checks
    begin once it first says so (a tree still starting holds CONNECTs), and then go on
    whatever it says (a stalled ingest makes /healthz 503 too: that is when it counts)."""

    def __init__(self, clock, interval, where, password, rows, metrics, ready=None):
        self._clock = clock
        self._interval = interval
        self._where = where
        self._password = password.encode("utf-8")
        self._rows = rows
        self._metrics = metrics
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._client = None  # the CanaryClient, once connected
        self._connecting = None  # the Deferred of a connection under way
        self._current = None  # the _Check under way
        self._seq = 0
        self._failing_since = None
        self._last = None  # (when, result) of the last check
        self._last_ok = None  # (when, seconds it took)
        self._ready_once = ready is None
        self._up = ready

    def startService(self):
        super().startService()
        if self._rows is not None:
            self._rows.start().addErrback(
                lambda failure: log.failure("canary: cannot open mqttd.db", failure))
        self._loop.start(self._interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self._current = None
        self._drop()
        if self._rows is not None:
            return self._rows.close()
        return None

    # -- one check ---------------------------------------------------------------------

    def check(self):
        """End the check under way (a miss, named by what it waited for) and start one.
        Never raises (a LoopingCall that raised would stop for good)."""
        try:
            self._check()
        except Exception:
            log.failure("canary: a check failed to start")

    def _check(self):
        if not self._ready_once:
            if not self._up():
                return
            self._ready_once = True
        if self._current is not None:
            stage = self._current.stage
            self._settle(self._current, stage)
            if stage == "unreachable":
                self._drop()  # no answer to the connect: the next check tries anew
        self._seq += 1
        check = self._current = _Check(self._seq, self._clock.seconds())
        d = self._ready()
        d.addCallback(self._publish, check)
        d.addCallback(self._look_up, check)
        d.addErrback(self._failed, check)

    def _ready(self):
        """A Deferred of the connected client: the one kept, or a new connection (one
        check at a time waits for it: the next check drops what is still connecting)."""
        client = self._client
        if client is not None and client.open and client.accepted:
            return succeed(client)
        self._drop()
        endpoint = self._where()
        if endpoint is None:
            return fail(ConnectionError("no MQTT listener bound yet"))
        keepalive = min(65535, int(self._interval * 2) + 10)
        self._connecting = d = endpoint.connect(client_factory(
            CANARY_CLIENT_ID, CANARY_USERNAME, self._password, keepalive))
        d.addCallback(self._opened)
        return d

    def _opened(self, client):
        self._connecting = None
        self._client = client
        return client.ready  # fires with the client once its CONNACK 0 came

    def _publish(self, client, check):
        if check is not self._current:
            return None
        check.stage = "no ack"
        check.payload = json.dumps({"canary": check.seq, "at": check.started,
                                    "nonce": os.urandom(8).hex()}).encode("ascii")
        packet_id = (check.seq - 1) % 65535 + 1
        return client.publish(packet_id, CANARY_TOPIC, check.payload)

    def _look_up(self, _, check):
        if check is not self._current:
            return None
        if self._rows is None:
            self._settle(check, "ok")
            return None
        check.stage = "check failed"
        d = self._rows.found(CANARY_CLIENT_ID, check.payload, check.started - _SINCE_MARGIN)
        d.addCallback(lambda found: self._settle(check, "ok" if found else "not stored"))
        return d

    def _failed(self, failure, check):
        if check is not self._current:
            return None
        if failure.check(Refused):
            self._settle(check, "refused", failure.getErrorMessage())
        elif check.stage == "check failed":
            self._settle(check, "check failed", failure.getErrorMessage())
        else:
            self._settle(check, "unreachable", failure.getErrorMessage())
        return None

    def _drop(self):
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()  # not connected yet: abandon the attempt
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- its outcome -------------------------------------------------------------------

    def _settle(self, check, result, detail=""):
        if check is not self._current:
            return
        self._current = None
        now = self._clock.seconds()
        metrics = self._metrics
        metrics.manage_canary_checks[result] += 1
        self._last = (now, result)
        if result == "ok":
            metrics.manage_canary_seconds.observe(now - check.started)
            self._last_ok = (now, now - check.started)
            if self._failing_since is not None:
                log.info("canary: the data path works again ({client_id} published, "
                         "acknowledged and stored) after {failing:.0f} s of failures",
                         client_id=CANARY_CLIENT_ID, failing=now - self._failing_since)
                self._failing_since = None
        elif self._failing_since is None:
            self._failing_since = check.started
            log.error("canary: check failed: {result}{detail} ({client_id} on {topic}, "
                      "every manage.canary_interval = {interval:g} s); see the webhook and "
                      "ingest figures and alerts", result=result,
                      detail=f" ({detail})" if detail else "", client_id=CANARY_CLIENT_ID,
                      topic=CANARY_TOPIC, interval=self._interval)
        metrics.manage_canary_failing = int(self._failing_since is not None)

    def status(self):
        """What ``report()`` and the alerts show of the canary."""
        last_check, last_result = self._last or (None, None)
        last_ok, last_seconds = self._last_ok or (None, None)
        state = ("waiting" if self._last is None else
                 "failing" if self._failing_since is not None else "ok")
        return {"enabled": True, "state": state, "interval": self._interval,
                "client_id": CANARY_CLIENT_ID, "topic": CANARY_TOPIC,
                "row_check": self._rows is not None, "failing_since": self._failing_since,
                "last_check": last_check, "last_result": last_result, "last_ok": last_ok,
                "last_seconds": last_seconds,
                "checks": dict(self._metrics.manage_canary_checks)}
