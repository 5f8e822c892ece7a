"""``mqttd report`` against the real appliance (issue 14, point 6): after a connect storm
from one loopback address, that address comes first by connects and by connections, its
refusals are counted by limit, and the report comes back within a second while clients
publish."""
import json
import threading
import time

from mqttd.manage.report_cli import fetch_report
from tests.integration.support.cli import mqttd_command
from tests.integration.support.common import wait_for
from tests.integration.support.manhole import manhole_session, manhole_setup, report_url
from tests.integration.support.raw_client import ConnectionClosed
from tests.integration.support.testcase import BrokerTestCase

STORM = "127.0.0.7"
OTHERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LIMITS = ("[auth]\nallow_anonymous = true\n[flapping_detect]\nenable = false\n"
          "[limits]\nallowlist = []\nmax_conn_rate_per_ip = 5.0\nconn_rate_burst = 30\n")


class _ReportCases:
    def storm(self):
        """40 connects from STORM (10 kept open, the burst of 30 then refusals), 2 from
        each of OTHERS kept open."""
        kept = []
        refused = 0
        for n in range(40):
            try:  # a refused socket is reset at accept: at connect() or at the first read
                raw = self.raw(source=STORM, timeout=3)
                if raw.connect(client_id=f"storm-{n}", timeout=3)[0] == 0 and len(kept) < 10:
                    kept.append(raw)
                    continue
                raw.close()
            except (ConnectionClosed, ConnectionResetError):
                refused += 1
        for host in OTHERS:
            for n in range(2):
                raw = self.raw(source=host)
                self.assertEqual(raw.connect(client_id=f"calm-{host}-{n}")[0], 0)
                kept.append(raw)
        self.assertGreater(refused, 0, "the storm should pass the connect rate")
        return kept

    def test_the_storming_address_is_named_first(self):
        self.storm()
        url = report_url(self.broker)
        run = mqttd_command("report", "--url", url, "--json")
        self.assertEqual(run.returncode, 0, run.stderr + self.context())
        report = json.loads(run.stdout)
        top = report["top_ips"]
        self.assertEqual(top["by_connect_rate"][0]["ip"], STORM)
        self.assertEqual(top["by_connect_rate"][0]["connects"], 40)
        self.assertEqual(top["by_connections"][0]["ip"], STORM)
        self.assertEqual(top["by_connections"][0]["open"], 10)
        self.assertEqual({row["ip"] for row in top["by_connections"][1:]}, set(OTHERS))
        for window in ("last_minute", "last_hour", "last_day"):
            refusals = report["refusals"][window]["by_limit"]
            self.assertGreater(refusals.get("limits.max_conn_rate_per_ip", 0), 0, window)
        wait_for(lambda: sum(w["connections"] for w in json.loads(
            mqttd_command("report", "--url", url, "--json").stdout)["workers"]) == 16,
            timeout=10, message="16 connections counted by process", context=self.context)
        text = mqttd_command("report", "--url", url)
        self.assertEqual(text.returncode, 0, text.stderr)
        lines = text.stdout.splitlines()
        rate = lines.index(next(line for line in lines if line.startswith("Top IPs by connects")))
        self.assertTrue(lines[rate + 2].split()[0] == STORM, text.stdout)

    def test_the_report_comes_within_a_second_while_clients_publish(self):
        stop = threading.Event()
        publisher = self.client("loader")

        def load():
            n = 0
            while not stop.is_set():
                publisher.publish("load/t", str(n).encode(), qos=1)
                n += 1
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(stop.set)
        self.storm()
        url = report_url(self.broker)
        for _ in range(5):
            started = time.monotonic()
            report = fetch_report(url)
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(report["top_ips"]["by_connect_rate"][0]["ip"], STORM)

    def test_the_manholes_report_is_the_same_text(self):
        self.storm()
        manhole = manhole_session(self, self.broker)
        text = manhole.run("report()")
        self.assertTrue(text.startswith("mqttd report at "), text)
        lines = text.splitlines()
        rate = lines.index(next(line for line in lines if line.startswith("Top IPs by connects")))
        self.assertEqual(lines[rate + 2].split()[0], STORM)


class TreeReportTests(_ReportCases, BrokerTestCase):
    def setUp(self):
        section, _ = manhole_setup(self)
        self.config = "[server]\nworkers = 2\n" + LIMITS + section
        super().setUp()


class SingleReportTests(_ReportCases, BrokerTestCase):
    def setUp(self):
        section, _ = manhole_setup(self)
        self.config = "[server]\nworkers = 0\n" + LIMITS + section
        super().setUp()
