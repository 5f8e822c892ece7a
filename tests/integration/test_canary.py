"""The canary against the real appliance: a QoS 1 message through the listener every
``manage.canary_interval``, its row found in SQLite; when the ingest child is stopped
(SIGSTOP) the canary alerts within two intervals, and the alert clears once it runs
again (SIGCONT). Its rows carry its reserved client id and topic, and no "#" subscriber
sees them. The single process runs it too."""
import os
import signal
import time

from tests.integration.support.common import wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.metrics import health, scrape, series, wait_for_series
from tests.integration.support.process import requires_mqttd
from tests.integration.support.reload import hup, rewrite_config
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import wait_for_children

INTERVAL = 2.0
NAMES = ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")


def _checks(samples, result):
    return samples.get(series("manage_canary_checks_total", result=result), 0)


class CanaryCase(BrokerTestCase):
    def setUp(self):
        super().setUp()
        self.url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                            context=self.context)
        wait_for(lambda: health(self.url)[0] == 200, timeout=20, message="healthz 200",
                 context=self.context)

    def wait_for_ok(self, more_than=0, timeout=20):
        return wait_for_series(self.url, lambda s: _checks(s, "ok") > more_than
                               and s[series("manage_canary_failing")] == 0, timeout=timeout)

    def canary_rows(self):
        return [row for row in stored_messages(self.broker.db_path)
                if row[0] == "$mqttd-canary"]


@requires_mqttd("mqttd's canary")
class TreeCanaryTests(CanaryCase):
    config = ("[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"
              f"[manage]\ncanary_interval = {INTERVAL}\n")

    def test_alerts_within_two_intervals_of_a_stopped_ingest_and_clears_after(self):
        procs = wait_for_children(self.broker.process.pid, NAMES)
        everyone = self.client()
        everyone.subscribe("#", qos=1)
        samples = self.wait_for_ok()
        rows = self.canary_rows()
        self.assertGreaterEqual(len(rows), 1)
        self.assertEqual({(row[3], row[4]) for row in rows}, {("$mqttd/canary", 1)})
        ingest = procs["mqttd-ingest"]
        os.kill(ingest, signal.SIGSTOP)
        self.addCleanup(os.kill, ingest, signal.SIGCONT)
        stopped = time.monotonic()
        samples = wait_for_series(self.url, lambda s: s[series("manage_canary_failing")] == 1,
                                  timeout=4 * INTERVAL, interval=0.05)
        took = time.monotonic() - stopped
        self.assertLessEqual(took, 2 * INTERVAL + 0.5, f"alerted after {took:.2f} s")
        self.assertGreaterEqual(_checks(samples, "no ack"), 1)
        self.assertIn("canary: check failed: no ack", self.broker.output())
        ok = _checks(samples, "ok")
        os.kill(ingest, signal.SIGCONT)
        samples = self.wait_for_ok(more_than=ok, timeout=30)
        self.assertIn("canary: the data path works again", self.broker.output())
        self.assertEqual(self.broker.output().count("canary: check failed"), 1)  # one episode
        self.assertGreater(len(self.canary_rows()), len(rows))
        everyone.no_message(timeout=0.5)  # no canary message for a "#" subscriber


@requires_mqttd("mqttd's canary")
class SingleProcessCanaryTests(CanaryCase):
    config = ("[auth]\nallow_anonymous = true\n[server]\nworkers = 0\n"
              f"[manage]\ncanary_interval = {INTERVAL}\n")

    def test_the_single_process_checks_its_own_listener_and_finds_its_rows(self):
        samples = self.wait_for_ok(more_than=1)
        self.assertEqual(_checks(samples, "not stored"), 0)
        self.assertGreaterEqual(len(self.canary_rows()), 2)
        self.assertGreater(samples[series("manage_canary_seconds_count")], 1)
        self.assertEqual(scrape(self.url)[series("manage_canary_failing")], 0)


@requires_mqttd("mqttd's canary")
class CanaryReloadTests(CanaryCase):
    """A SIGHUP that reloads [auth] and [[auth.acl]] from a file without the canary's
    user (it is made at start) neither kicks the canary nor refuses it."""

    config = ('[auth]\nallow_anonymous = true\nacl_no_match = "deny"\n'
              '[[auth.acl]]\nall = true\ntopic = "#"\npermission = "allow"\n'
              f"[server]\nworkers = 2\n[manage]\ncanary_interval = {INTERVAL}\n")

    def test_a_reload_of_users_and_acl_keeps_the_canary_passing(self):
        ok = _checks(self.wait_for_ok(), "ok")
        rewrite_config(self.broker, self.config + '[[auth.users]]\nusername = "new"\n'
                       'password = "pw"\n')
        hup(self.broker, "SIGHUP: configuration reloaded")
        samples = self.wait_for_ok(more_than=ok + 2, timeout=30)
        self.assertEqual(samples[series("manage_canary_failing")], 0)
        self.assertEqual(sum(value for key, value in samples.items()
                             if key.startswith("manage_canary_checks_total")
                             and "ok" not in key), 0)
        self.assertNotIn("kick $mqttd-canary", self.broker.output())
