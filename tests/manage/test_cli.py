"""The ``mqttd`` operator command (issue 13, point 2), run in-process on a temp data dir,
and once as the installed console script."""
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

from twisted.trial import unittest

from mqttd.manage.cli import config_path, main
from mqttd.store.accounts import get_account
from mqttd.store.bans import add_ban, list_bans
from mqttd.store.gate_records import BanRecord, TokenRecord, token_hash
from mqttd.store.tokens import lookup_token


class Run:
    """One run of main(): its status and what it wrote."""

    def __init__(self, argv, environ):
        out, err = io.StringIO(), io.StringIO()
        self.status = main(argv, stdout=out, stderr=err, environ=environ)
        self.out, self.err = out.getvalue(), err.getvalue()

    @property
    def last_line(self):
        return self.out.splitlines()[-1]

    def json(self):
        return json.loads(self.out)


class CliTestCase(unittest.TestCase):
    def setUp(self):
        self.data_dir = os.path.join(self.mktemp(), "var")
        self.environ = {}

    def mqttd(self, *argv, data_dir=True):
        argv = list(argv) + (["--data-dir", self.data_dir] if data_dir else [])
        return Run(argv, self.environ)

    def ok(self, *argv, **kwargs):
        run = self.mqttd(*argv, **kwargs)
        self.assertEqual((run.status, run.err), (0, ""), run.out)
        return run

    def fails(self, *argv, status=1):
        run = self.mqttd(*argv)
        self.assertEqual(run.status, status, run.out + run.err)
        self.assertEqual(run.out, "")
        self.assertEqual(len(run.err.splitlines()), 1, run.err)
        return run.err

    def db(self, data_dir=None):
        conn = sqlite3.connect(os.path.join(data_dir or self.data_dir, "mqttd.db"),
                               isolation_level=None)
        self.addCleanup(conn.close)
        return conn


class TokenCommandTests(CliTestCase):
    def test_tokens_add_prints_the_token_alone_last_and_it_looks_up(self):
        self.ok("accounts", "add", "acme", "--max-connections", "5")
        run = self.ok("tokens", "add", "acme")
        token = run.last_line
        self.assertRegex(token, r"\A[A-Za-z0-9_-]{32}\Z")
        self.assertEqual(lookup_token(self.db(), token),
                         TokenRecord(token[:6], "acme", True, True, 5))

    def test_json_gives_the_token_and_list_never_shows_it(self):
        self.ok("accounts", "add", "acme")
        made = self.ok("tokens", "add", "acme", "--json").json()
        self.assertEqual((made["account"], made["prefix"]), ("acme", made["token"][:6]))
        listed = self.ok("tokens", "list", "--json")
        self.assertNotIn(made["token"], listed.out)
        self.assertEqual([(t["prefix"], t["account"], t["active"]) for t in listed.json()["tokens"]],
                         [(made["prefix"], "acme", True)])
        self.assertNotIn(made["token"], self.ok("tokens", "list").out)
        self.assertNotIn(made["token"], self.ok("accounts", "show", "acme").out)

    def test_revoke_by_prefix_then_the_token_is_refused(self):
        self.ok("accounts", "add", "acme")
        token = self.ok("tokens", "add", "acme").last_line
        run = self.ok("tokens", "revoke", token[:6])
        self.assertIn(f"revoked token {token[:6]} of account acme", run.out)
        self.assertFalse(lookup_token(self.db(), token).token_active)
        self.assertIn("already revoked", self.fails("tokens", "revoke", token))

    def test_list_of_one_account(self):
        for name in ("acme", "beta"):
            self.ok("accounts", "add", name)
            self.ok("tokens", "add", name)
        listed = self.ok("tokens", "list", "--account", "beta", "--json").json()["tokens"]
        self.assertEqual([t["account"] for t in listed], ["beta"])
        self.assertIn("no account named 'ghost'", self.fails("tokens", "list", "--account", "ghost"))


class AccountCommandTests(CliTestCase):
    def test_add_show_set_disable_enable(self):
        added = self.ok("accounts", "add", "acme", "--max-connections", "4", "--devices", "3",
                        "--licence", "gold", "--json").json()
        self.assertEqual({k: added[k] for k in ("name", "active", "max_connections", "devices",
                                                "licence")},
                         {"name": "acme", "active": True, "max_connections": 4, "devices": 3,
                          "licence": "gold"})
        self.ok("tokens", "add", "acme")
        shown = self.ok("accounts", "show", "acme", "--json").json()
        self.assertEqual(len(shown["tokens"]), 1)
        changed = self.ok("accounts", "set", "acme", "--max-connections", "none",
                          "--json").json()
        self.assertEqual((changed["max_connections"], changed["devices"]), (None, 3))
        self.assertGreaterEqual(changed["updated"], added["updated"])
        self.ok("accounts", "disable", "acme")
        self.assertFalse(get_account(self.db(), "acme").active)
        self.ok("accounts", "enable", "acme")
        self.assertTrue(get_account(self.db(), "acme").active)

    def test_inactive_and_list(self):
        self.ok("accounts", "add", "idle", "--inactive")
        self.ok("accounts", "add", "acme")
        listed = self.ok("accounts", "list", "--json").json()["accounts"]
        self.assertEqual([(a["name"], a["active"]) for a in listed],
                         [("acme", True), ("idle", False)])
        text = self.ok("accounts", "list").out.splitlines()
        self.assertEqual(text[0].split()[:2], ["NAME", "ACTIVE"])
        self.assertEqual([line.split()[:2] for line in text[1:]], [["acme", "yes"], ["idle", "no"]])

    def test_errors_are_one_line_and_status_1(self):
        self.assertIn("bad account name 'a/b'", self.fails("accounts", "add", "a/b"))
        self.ok("accounts", "add", "acme")
        self.assertIn("exists already", self.fails("accounts", "add", "acme"))
        self.assertIn("no account named 'ghost'", self.fails("tokens", "add", "ghost"))
        self.assertIn("no account named 'ghost'", self.fails("accounts", "disable", "ghost"))
        self.assertIn("nothing to set", self.fails("accounts", "set", "acme"))

    def test_usage_errors_are_one_line_and_status_2(self):
        for argv in (["accounts", "add"], ["accounts", "set", "acme", "--max-connections", "x"],
                     ["accounts", "add", "acme", "--devices", "-1"], ["accounts"],
                     ["tokens", "frobnicate"], ["bans", "add", "port", "1883"],
                     ["bans", "add", "ip", "192.0.2.1", "--for", "0"]):
            err = self.fails(*argv, status=2)
            self.assertTrue(err.startswith("mqttd"), err)
        self.assertFalse(os.path.exists(self.data_dir))  # nothing was opened


class BanCommandTests(CliTestCase):
    def test_add_timed_and_for_ever_list_and_rm(self):
        timed = self.ok("bans", "add", "clientid", "flappy", "--for", "60", "--reason", "flaps",
                        "--who", "alice", "--json").json()
        self.assertEqual(timed["until"], timed["at"] + 60)
        self.assertEqual((timed["who"], timed["reason"]), ("alice", "flaps"))
        self.environ["SUDO_USER"] = "bob"
        ip = self.ok("bans", "add", "ip", "2001:DB8::/32", "--json").json()
        self.assertEqual((ip["value"], ip["until"], ip["who"]), ("2001:db8::/32", None, "bob"))
        listed = self.ok("bans", "list", "--json").json()["bans"]
        self.assertEqual([(b["kind"], b["value"]) for b in listed],
                         [("clientid", "flappy"), ("ip", "2001:db8::/32")])
        self.ok("bans", "rm", "ip", "2001:db8::/32")
        self.assertEqual([b.value for b in list_bans(self.db())], ["flappy"])
        self.assertIn("no ip ban of '2001:db8::/32'", self.fails("bans", "rm", "ip", "2001:db8::/32"))

    def test_list_shows_lapsed_bans_only_with_all(self):
        self.ok("bans", "list")  # makes the database
        add_ban(self.db(), BanRecord("username", "old", "op", "lapsed", 10.0, 20.0))
        self.assertEqual(self.ok("bans", "list", "--json").json(), {"bans": []})
        every = self.ok("bans", "list", "--all", "--json").json()["bans"]
        self.assertEqual([(b["value"], b["until"]) for b in every], [("old", 20.0)])

    def test_a_token_is_banned_by_its_hash_and_never_stored_or_shown_whole(self):
        self.ok("accounts", "add", "acme")
        token = self.ok("tokens", "add", "acme").last_line
        added = self.ok("bans", "add", "username", token, "--for", "60")
        self.assertIn(f"banned username {token_hash(token)} (token {token[:6]}) until",
                      added.out)
        ((value,),) = self.db().execute("SELECT value FROM bans").fetchall()
        self.assertEqual(value, token_hash(token))
        listed = self.ok("bans", "list")
        self.assertIn(token_hash(token), listed.out)
        self.assertEqual(listed.out.splitlines()[0].split()[:3], ["KIND", "VALUE", "TOKEN"])
        (ban,) = self.ok("bans", "list", "--json").json()["bans"]
        self.assertEqual((ban["value"], ban["token_prefix"]), (token_hash(token), token[:6]))
        for run in (added, listed):
            self.assertNotIn(token, run.out)
        # Given again by the hash bans list shows: the same ban, not a hash of the hash.
        again = self.ok("bans", "add", "username", token_hash(token), "--json").json()
        self.assertEqual((again["value"], again["token_prefix"]), (token_hash(token), token[:6]))
        self.assertEqual(len(list_bans(self.db())), 1)

    def test_a_token_ban_is_removed_by_the_token_or_by_its_hash(self):
        for given in ("a-token-not-even-stored-here-xyz", None):
            token = "a-token-not-even-stored-here-xyz"
            self.ok("bans", "add", "username", token)
            removed = self.ok("bans", "rm", "username", given or token_hash(token))
            self.assertEqual(removed.out.strip(),
                             f"removed the ban of username {token_hash(token)}"
                             + (" (token a-toke)" if given else ""))
            self.assertEqual(list_bans(self.db()), [])
        err = self.fails("bans", "rm", "username", token)
        self.assertIn(f"no username ban of '{token_hash(token)}' (token a-toke)", err)
        self.assertNotIn(token, err)

    def test_a_static_users_ban_holds_its_name(self):
        config = os.path.join(self.mktemp() + ".toml")
        with open(config, "w") as f:
            f.write('[[auth.users]]\nusername = "dashboard"\npassword = "pw"\n')
        self.ok("bans", "add", "username", "dashboard", "--config", config)
        self.ok("bans", "add", "username", "dashboard2", "--config", config)  # not a user
        self.assertEqual(sorted(b.value for b in list_bans(self.db())),
                         sorted(["dashboard", token_hash("dashboard2")]))
        self.ok("bans", "rm", "username", "dashboard", "--config", config)
        self.assertEqual([b.value for b in list_bans(self.db())], [token_hash("dashboard2")])

    def test_a_bad_ip_is_one_line(self):
        err = self.fails("bans", "add", "ip", "10.1.2.3/8")
        self.assertIn("has bits set past its prefix (the network is 10.0.0.0/8)", err)


class TraceCommandTests(CliTestCase):
    def test_add_for_an_hour_by_default_list_and_rm(self):
        rule = self.ok("trace", "add", "client_id=dev-7", "--who", "alice", "--json").json()
        self.assertEqual((rule["kind"], rule["value"], rule["who"]), ("client_id", "dev-7", "alice"))
        self.assertEqual(rule["until"], rule["at"] + 3600)
        ip = self.ok("trace", "add", "ip=2001:DB8::/32", "--until-removed", "--json").json()
        self.assertEqual((ip["value"], ip["until"]), ("2001:db8::/32", None))
        timed = self.ok("trace", "add", "username=ab12cd", "--for", "60", "--json").json()
        self.assertEqual(timed["until"], timed["at"] + 60)
        listed = self.ok("trace", "list", "--json").json()["rules"]
        self.assertEqual([(r["kind"], r["value"]) for r in listed],
                         [("client_id", "dev-7"), ("ip", "2001:db8::/32"), ("username", "ab12cd")])
        self.assertIn("client_id  dev-7", "\n".join(self.ok("trace", "list").out.splitlines()))
        self.assertEqual(self.ok("trace", "rm", "ip=2001:db8::/32").out,
                         "no longer tracing ip=2001:db8::/32\n")
        self.assertIn("no trace rule ip=2001:db8::/32", self.fails("trace", "rm", "ip=2001:db8::/32"))

    def test_a_change_raises_the_trace_version_not_the_gates(self):
        self.ok("trace", "list")
        conn = self.db()
        gate = conn.execute("SELECT version FROM gate_version").fetchone()[0]
        self.ok("trace", "add", "client_id=a")
        self.assertEqual(conn.execute("SELECT version FROM trace_version").fetchone()[0], 1)
        self.assertEqual(conn.execute("SELECT version FROM gate_version").fetchone()[0], gate)

    def test_bad_targets_are_usage_errors_and_bad_ips_one_line(self):
        for bad in ("client_id", "host=1.2.3.4", "ip=", "dev-7"):
            run = self.mqttd("trace", "add", bad)
            self.assertEqual(run.status, 2, bad)
            self.assertIn("must be client_id=ID, username=NAME or ip=ADDRESS", run.err)
        self.assertIn("ip trace rule: not an IP address", self.fails("trace", "add", "ip=nope"))


class ConfigTests(CliTestCase):
    def write_config(self, data_dir):
        path = os.path.join(self.mktemp() + ".toml")
        with open(path, "w") as f:
            f.write(f'[server]\ndata_dir = "{data_dir}"\n')
        return path

    def test_config_names_the_data_dir_and_data_dir_overrides_it(self):
        configured = os.path.join(self.mktemp(), "configured")
        config = self.write_config(configured)
        self.ok("accounts", "add", "acme", "--config", config, data_dir=False)
        self.assertEqual(get_account(self.db(configured), "acme").name, "acme")
        self.ok("accounts", "add", "beta", "--config", config)  # --data-dir wins
        self.assertEqual([row[0] for row in self.db().execute("SELECT name FROM accounts")],
                         ["beta"])

    def test_mqttd_config_from_the_environment(self):
        configured = os.path.join(self.mktemp(), "from-env")
        self.environ["MQTTD_CONFIG"] = self.write_config(configured)
        self.ok("accounts", "add", "acme", data_dir=False)
        self.assertTrue(os.path.exists(os.path.join(configured, "mqttd.db")))

    def test_a_bad_config_is_one_line_naming_the_key(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[server]\nworkers = -1\n")
        err = self.fails("accounts", "list", "--config", path)
        self.assertIn("configuration error: server.workers", err)
        self.assertIn("cannot read config", self.fails("accounts", "list", "--config",
                                                        path + ".missing"))

    def test_which_config_file(self):
        system = self.mktemp()
        self.assertEqual(config_path("given.toml", {"MQTTD_CONFIG": "env.toml"}, system),
                         "given.toml")
        self.assertEqual(config_path(None, {"MQTTD_CONFIG": "env.toml"}, system), "env.toml")
        self.assertIsNone(config_path(None, {"MQTTD_CONFIG": ""}, system))
        open(system, "w").close()
        self.assertEqual(config_path(None, {}, system), system)

    def test_a_database_from_a_newer_mqttd_is_left_alone(self):
        os.makedirs(self.data_dir)
        conn = self.db()
        conn.execute("PRAGMA user_version = 99")
        self.assertIn("newer than this mqttd knows", self.fails("accounts", "list"))


class ConsoleScriptTests(unittest.TestCase):
    def test_the_installed_script_as_the_owner_of_the_data_dir(self):
        """The console script the package installs; run as root on a data dir another
        user owns (the .deb's mqttd), it becomes that user, so every database file is
        theirs."""
        script = os.path.join(os.path.dirname(sys.executable), "mqttd")
        # Under /tmp: the data dir's owner must be able to reach it (trial's own
        # temporary folders are root's alone).
        top = tempfile.mkdtemp(prefix="mqttd-cli-")
        self.addCleanup(shutil.rmtree, top)
        os.chmod(top, 0o755)
        data_dir = os.path.join(top, "var")
        os.makedirs(data_dir)
        owner = os.getuid()
        if owner == 0:
            owner = 65534  # nobody
            os.chown(data_dir, owner, owner)

        def mqttd(*argv):
            return subprocess.run([script, *argv, "--data-dir", data_dir],
                                  capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, MQTTD_CONFIG=""))

        added = mqttd("accounts", "add", "acme")
        self.assertEqual(added.returncode, 0, added.stderr)
        made = mqttd("tokens", "add", "acme")
        self.assertEqual(made.returncode, 0, made.stderr)
        token = made.stdout.splitlines()[-1]
        names = os.listdir(data_dir)
        self.assertIn("mqttd.db", names)
        self.assertEqual({name: os.stat(os.path.join(data_dir, name)).st_uid for name in names},
                         {name: owner for name in names})
        conn = sqlite3.connect(os.path.join(data_dir, "mqttd.db"))
        self.addCleanup(conn.close)
        self.assertEqual(lookup_token(conn, token).account, "acme")
        usage = mqttd("tokens")
        self.assertEqual((usage.returncode, len(usage.stderr.splitlines())), (2, 1))
