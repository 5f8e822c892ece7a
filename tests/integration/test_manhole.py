"""The telnet manhole of the real appliance (issue 14, point 1): driven over telnet with
mqttd's own client, the right password and a wrong one; its helpers answering for the
whole tree; ``kick`` and ``ban`` taking effect on live paho clients held by each worker;
``mqttd manhole`` from the shell, with ``-e`` and on a terminal."""
import ast
import os
import pty
import select
import socket
import subprocess
import sys

from mqttd.manage.manhole_client import LoginRefused, plain_text
from tests.integration.support.cli import mqttd_cli, mqttd_command
from tests.integration.support.common import HOST, wait_for
from tests.integration.support.manhole import (PASSWORD, USER, manhole_port,
                                               manhole_session, manhole_setup)
from tests.integration.support.testcase import BrokerTestCase
from tests.integration.support.tree import client_on, wait_for_children

WORKERS = ("mqttd-worker-1", "mqttd-worker-2")
NOT_AUTHORIZED = 5
BASE = "[auth]\nallow_anonymous = true\nreload_interval = 0.2\n"


class _ManholeCase(BrokerTestCase):
    workers = 2
    bounds = ""  # more [manage] lines

    def setUp(self):
        section, self.passwd = manhole_setup(self)
        self.config = f"[server]\nworkers = {self.workers}\n{BASE}{section}{self.bounds}"
        super().setUp()

    def session(self, **kwargs):
        return manhole_session(self, self.broker, **kwargs)

    def value(self, client, source):
        """What ``source`` printed, read back as the Python value it is."""
        return ast.literal_eval(client.run(source))

    def answer(self, client, source):
        """The value of a helper that answers later (clients(), unban()): run alone,
        its answer printed, then read back from ``_``."""
        client.run(source)
        return self.value(client, "dict(_)")

    def shell(self, *expressions, password_file=None):
        argv = ["manhole", "--endpoint", f"tcp:{manhole_port(self.broker)}:interface={HOST}",
                "--password-file", password_file or self.passwd]
        for expression in expressions:
            argv += ["-e", expression]
        run = mqttd_command(*argv)
        return run.returncode, run.stdout, run.stderr


class _LoginCases:
    def test_the_right_password_opens_the_prompt_and_a_wrong_one_is_refused_and_logged(self):
        with self.assertRaises(LoginRefused):
            self.session(password="not-" + PASSWORD)
        wait_for(lambda: f"manhole: login refused for '{USER}' from 127.0.0.1:"
                 in self.broker.output(), message="the refusal logged with the peer",
                 context=self.context)
        self.assertNotIn("not-" + PASSWORD, self.broker.output())
        client = self.session()
        text = client.run("help()")
        for helper in ("stats(", "clients(", "kick(", "ban(", "unban(", "bans(", "accounts(",
                       "top_ips(", "webhook(", "report(", "trace(", "help("):
            self.assertIn(f"  {helper}", text)
        self.assertEqual(client.run("trace('anyone')"), "trace not enabled")
        stats = self.value(client, "stats('manage_')")
        self.assertEqual(stats["manage_manhole_logins{outcome=refused}"], 1)

    def test_mqttd_manhole_runs_expressions_from_the_shell(self):
        status, out, err = self.shell("help()", "6 * 7")
        self.assertEqual(status, 0, err + self.context())
        self.assertIn("  kick(client_id, account=any)", out)
        self.assertEqual(out.splitlines()[-1], "42")
        wrong = self.mktemp()
        with open(wrong, "w") as f:
            f.write(f"{USER}:wrong\n")
        status, out, err = self.shell("help()", password_file=wrong)
        self.assertEqual((status, out), (1, ""))
        self.assertIn("refused", err)


    def test_an_interactive_session_in_a_terminal(self):
        """``mqttd manhole`` on a pseudo-terminal: the prompt, a line typed and its
        answer, and Ctrl-D at an empty prompt leaving with status 0."""
        command = [os.path.join(os.path.dirname(sys.executable), "mqttd"), "manhole",
                   "--endpoint", f"tcp:{manhole_port(self.broker)}:interface={HOST}",
                   "--password-file", self.passwd]
        ours, theirs = pty.openpty()
        process = subprocess.Popen(command, stdin=theirs, stdout=theirs, stderr=theirs,
                                   env=dict(os.environ, MQTTD_CONFIG=""), close_fds=True)
        os.close(theirs)
        self.addCleanup(os.close, ours)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        seen = bytearray()

        def read_until(text):
            def found():
                if select.select([ours], [], [], 0.1)[0]:
                    try:
                        seen.extend(os.read(ours, 65536))
                    except OSError:  # the terminal closed: the command has exited
                        pass
                return text in plain_text(bytes(seen))
            wait_for(found, timeout=15, message=f"{text!r} on the terminal",
                     context=lambda: plain_text(bytes(seen)) + self.context())
        read_until(">>> ")
        os.write(ours, b"6 * 7\r")
        read_until("\n42")
        os.write(ours, b"\x04")
        self.assertEqual(process.wait(timeout=15), 0)


class TreeManholeTests(_LoginCases, _ManholeCase):
    def setUp(self):
        super().setUp()
        self.procs = wait_for_children(self.broker.process.pid, WORKERS + ("mqttd-ingest",))

    def test_clients_kick_and_ban_reach_clients_on_either_worker(self):
        one = client_on(self, 1, "mh", self.procs)
        two = client_on(self, 2, "mh", self.procs)
        one.subscribe("mh/#", 1)
        manhole = self.session()
        listed = self.answer(manhole, "clients(client_id='mh-*')")
        self.assertEqual(listed["unanswered"], {})
        where = {c["client_id"]: (c["process"], c["subscriptions"]) for c in listed["clients"]}
        self.assertEqual(where, {one.client_id: ("mqttd-worker-1", 1),
                                 two.client_id: ("mqttd-worker-2", 0)})
        # kick: the connection on worker 2 goes, the one on worker 1 stays.
        kicked = self.value(manhole, f"kick({two.client_id!r})")
        self.assertEqual([k["client_id"] for k in kicked], [two.client_id])
        two.wait_disconnected()
        self.assertFalse(one.disconnected.is_set())
        wait_for(lambda: f"disconnect {two.client_id}" in self.broker.output(),
                 message="worker 2 closed the kicked client", context=self.context)
        # ban: the client on worker 1 is kicked and refused until unbanned.
        self.value(manhole, f"ban(client_id={one.client_id!r}, reason='test')")
        one.wait_disconnected()
        self.assertEqual(self.raw().connect(client_id=one.client_id)[0], NOT_AUTHORIZED)
        self.assertEqual([b["value"] for b in self.value(manhole, "bans()")], [one.client_id])
        self.assertIn(one.client_id, mqttd_cli(self.broker.data_dir, "bans", "list").stdout)
        self.assertTrue(self.answer(manhole, f"unban(client_id={one.client_id!r})")["removed"])
        wait_for(lambda: self.value(manhole, "bans()") == [], message="the ban lifted",
                 context=self.context)
        back = self.client(one.client_id)
        self.assertFalse(back.disconnected.is_set())

    def test_an_ip_ban_kicks_the_address_on_every_worker(self):
        banned = [self.raw(source="127.0.0.41") for _ in range(4)]
        for n, raw in enumerate(banned):
            self.assertEqual(raw.connect(client_id=f"ip-{n}")[0], 0)
        bystander = self.raw(source="127.0.0.42")
        self.assertEqual(bystander.connect(client_id="ip-other")[0], 0)
        manhole = self.session()
        processes = {c["process"] for c in
                     self.answer(manhole, "clients(ip='127.0.0.41')")["clients"]}
        self.assertEqual(processes, set(WORKERS), "the four ids should span both workers")
        self.value(manhole, "ban(ip='127.0.0.41', seconds=600)")
        for raw in banned:
            raw.wait_closed(timeout=5)
        self.assertTrue(bystander.is_open(timeout=0.3))
        self.assertTrue(self.refused_at_accept("127.0.0.41"))


class SingleManholeTests(_LoginCases, _ManholeCase):
    workers = 0

    def test_clients_and_kick_in_one_process(self):
        client = self.client("solo")
        manhole = self.session()
        (entry,) = self.answer(manhole, "clients()")["clients"]
        self.assertEqual((entry["client_id"], entry["process"]), ("solo", "mqttd"))
        self.value(manhole, "kick('solo')")
        client.wait_disconnected()


class BoundedManholeTests(_ManholeCase):
    """``manage.manhole_max_sessions`` and ``manhole_login_timeout`` in force."""

    workers = 0
    bounds = "manhole_max_sessions = 1\nmanhole_login_timeout = 1.0\n"

    def connect_raw(self):
        sock = socket.create_connection((HOST, manhole_port(self.broker)), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def until_closed(self, sock):
        """Everything ``sock`` receives until the manhole closes it."""
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return plain_text(received)
            received += chunk

    def test_one_session_at_most_and_a_slow_login_is_closed(self):
        first = self.session()
        self.assertEqual(first.run("6 * 7"), "42")
        self.assertIn("too many manhole sessions open", self.until_closed(self.connect_raw()))
        first.close()
        # Its slot is free again once the manhole heard of the close; this one never
        # logs in, so the login deadline of 1 s closes it.
        def timed_out():
            text = self.until_closed(self.connect_raw())
            return text if "login timed out" in text else None
        text = wait_for(timed_out, message="a free slot, then the deadline",
                        context=self.context)
        self.assertIn("Username:", text)
