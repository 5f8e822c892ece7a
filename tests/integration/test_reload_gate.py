"""SIGHUP reloads the gate's [auth] and [flapping_detect] and the [[auth.acl]] rules on
the real appliance, in the tree (the gate in the master, the ACL in every worker) and in
the one process: a lower rate_per_token refuses a token's 2nd attempt; anonymous off
kicks the anonymous client; a new static user gets in and a changed one is kicked;
flapping disabled bans no more; an ACL deny refuses a live client's next publish. A
file that does not validate changes nothing of it. In the tree, a worker started after
the reload starts with the new rules."""
import os
import signal

from tests.integration.support.cli import cli_ok, new_token
from tests.integration.support.common import wait_for
from tests.integration.support.reload import hup, rewrite_config
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import client_on, wait_for_children, wait_for_new_pid

ACCEPTED, BAD_CREDENTIALS, NOT_AUTHORIZED = 0, 4, 5
RELOADED = "SIGHUP: configuration reloaded"


def config(anonymous="true", rate=4.0, burst=4, users=(("alice", "pw-a"),),
           flapping="true", acl=()):
    text = (f"[auth]\nallow_anonymous = {anonymous}\nreload_interval = 0.2\n"
            f"rate_per_token = {rate}\nrate_burst = {burst}\n")
    for username, password in users:
        text += f'[[auth.users]]\nusername = "{username}"\npassword = "{password}"\n'
    for topic, permission in acl:
        text += f'[[auth.acl]]\nall = true\ntopic = "{topic}"\npermission = "{permission}"\n'
    return text + (f"[flapping_detect]\nenable = {flapping}\nmax_count = 3\n"
                   "window_time = 30.0\nban_time = 600.0\n")


class _ReloadCases:
    workers = 2

    @property
    def head(self):
        return f"[server]\nworkers = {self.workers}\n"

    def reload(self, text, expect=RELOADED, count=1):
        rewrite_config(self.broker, self.head + text)
        hup(self.broker, expect, count)

    def connack(self, client_id, username=None, password=None):
        raw = self.raw()
        return raw.connect(client_id=client_id, username=username, password=password)[0], raw

    def test_auth_a_lower_rate_anonymous_off_and_changed_users_apply_at_once(self):
        cli_ok(self, self.broker, "accounts", "add", "acme")
        used, fresh = new_token(self, self.broker, "acme"), new_token(self, self.broker, "acme")
        self.assertEqual([self.connack(f"u{i}", used)[0] for i in range(2)], [ACCEPTED] * 2)
        anonymous = self.connack("anon")[1]
        alice = self.connack("alice", "alice", b"pw-a")[1]
        self.reload(config(anonymous="false", rate=0.1, burst=1,
                           users=(("alice", "new-pw"), ("bob", "pw-b"))))
        # One attempt each 10 s now, from a token's first attempt on:
        self.assertEqual([self.connack(f"f{i}", fresh)[0] for i in range(2)],
                         [ACCEPTED, NOT_AUTHORIZED])
        anonymous.wait_closed(timeout=5)
        alice.wait_closed(timeout=5)
        self.assertEqual(self.connack("anon-2")[0], NOT_AUTHORIZED)
        self.assertEqual(self.connack("alice-2", "alice", b"pw-a")[0], BAD_CREDENTIALS)
        self.assertEqual(self.connack("alice-3", "alice", b"new-pw")[0], ACCEPTED)
        self.assertEqual(self.connack("bob", "bob", b"pw-b")[0], ACCEPTED)
        self.assertIn("kicking anon", self.broker.output())

    def flap(self, client_id):
        """Connect ``client_id`` and close, three times (the flapping max_count)."""
        for _ in range(3):
            code, raw = self.connack(client_id)
            self.assertEqual(code, ACCEPTED)
            raw.close()

    def test_flapping_disabled_by_sighup_bans_no_more(self):
        self.flap("flapper-1")
        wait_for(lambda: self.connack("flapper-1")[0] == NOT_AUTHORIZED, timeout=5,
                 message="flapper-1 banned", context=self.context)
        self.reload(config(flapping="false"))
        for _ in range(3):
            self.flap("flapper-2")
        code, last = self.connack("flapper-2")
        self.assertEqual(code, ACCEPTED)
        self.assertTrue(last.is_open(timeout=1.5), "flapper-2 was banned and kicked")
        self.assertEqual(self.connack("flapper-2")[0], ACCEPTED)
        self.assertEqual(self.connack("flapper-1")[0], NOT_AUTHORIZED)  # its ban stays

    def test_an_acl_deny_refuses_the_next_publish_of_a_live_client(self):
        live = self.client()
        live.publish("secret/a", b"before", qos=1)
        brokers = max(self.workers, 1)
        self.reload(config(acl=(("secret/#", "deny"),)), "ACL reloaded", count=brokers)
        live.publish_refused("secret/b", b"after")
        other = self.client()
        other.publish("open/x", b"still fine", qos=1)
        other.publish_refused("secret/c", b"denied")

    def test_a_file_that_does_not_validate_changes_none_of_it(self):
        live = self.client()
        self.reload(config(anonymous="false", acl=(("secret/#", "deny"),))
                    + "[broker]\nmax_inflight = 0\n", "configuration not reloaded")
        self.assertIn("broker.max_inflight", self.broker.output())
        live.publish("secret/a", b"still allowed", qos=1)
        self.client().publish("secret/b", b"anonymous still let in", qos=1)


class TreeReloadGateTests(_ReloadCases, BrokerTestCase):
    config = "[server]\nworkers = 2\n" + config()

    def test_a_worker_restarted_after_the_reload_has_the_new_rules(self):
        names = ("mqttd-worker-1", "mqttd-worker-2")
        master = self.broker.process.pid
        victim = wait_for_children(master, names)["mqttd-worker-1"]
        self.client().publish("secret/a", b"before", qos=1)
        self.reload(config(acl=(("secret/#", "deny"),)), "ACL reloaded", count=2)
        ready = self.broker.output().count("worker 1 ready")
        os.kill(victim, signal.SIGKILL)
        procs = wait_for_new_pid(master, names, "mqttd-worker-1", victim)
        wait_for(lambda: self.broker.output().count("worker 1 ready") > ready, timeout=15,
                 message="worker 1 ready again", context=self.context)
        late = client_on(self, 1, "late", procs)
        late.publish_refused("secret/b", b"denied by the rules it started with")


class OneProcessReloadGateTests(_ReloadCases, BrokerTestCase):
    workers = 0
    config = "[server]\nworkers = 0\n" + config()
