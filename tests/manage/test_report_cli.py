"""``mqttd report``: where it asks (from the configuration or --url), what it prints, and
its one line when the appliance cannot be asked. A stdlib HTTP server on a thread plays
the appliance's /report."""
import io
import json
import os
import shutil
import socketserver
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from twisted.trial import unittest

from mqttd.manage.cli import main
from mqttd.manage.report import build_report
from mqttd.manage.report_cli import ReportError, endpoint_address, fetch_report
from tests.support.manage import ApplianceCase


class EndpointTests(unittest.TestCase):
    def test_tcp_endpoints_are_reached_on_their_interface_or_loopback(self):
        self.assertEqual(endpoint_address("k", "tcp:9883:interface=127.0.0.1"),
                         ("127.0.0.1", 9883))
        self.assertEqual(endpoint_address("k", "tcp:9883"), ("127.0.0.1", 9883))
        self.assertEqual(endpoint_address("k", "tcp:port=9884:interface=127.0.0.2"),
                         ("127.0.0.2", 9884))
        self.assertEqual(endpoint_address("k", r"tcp6:9883:interface=\:\:1"), ("::1", 9883))
        self.assertEqual(endpoint_address("k", "unix:/run/mqttd/m.sock:mode=600"),
                         "/run/mqttd/m.sock")

    def test_what_names_no_fixed_place_is_refused(self):
        for description in ("tcp:0:interface=127.0.0.1", "", "ssl:8883", "tcp:x"):
            with self.assertRaises(ReportError):
                endpoint_address("manage.http_listen", description)


class _Serving:
    """A thread answering ``/report`` with ``body`` (and ``status``)."""

    def __init__(self, case, body, status=200, unix=None):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status if self.path == "/report" else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        if unix is None:
            self.server = HTTPServer(("127.0.0.1", 0), Handler)
            self.where = f"http://127.0.0.1:{self.server.server_address[1]}/report"
        else:
            class UnixHTTP(socketserver.UnixStreamServer):
                def get_request(self):
                    request, _ = super().get_request()
                    return request, ("local", 0)
            self.server = UnixHTTP(unix, Handler)
            self.where = unix
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        case.addCleanup(thread.join)
        case.addCleanup(self.server.server_close)
        case.addCleanup(self.server.shutdown)


class ReportCommandTests(ApplianceCase):
    def run_cli(self, *argv):
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(["report", *argv], stdout, stderr, environ={"MQTTD_CONFIG": ""})
        return status, stdout.getvalue(), stderr.getvalue()

    def serving(self, **kwargs):
        self.admit("127.0.0.7")
        body = json.dumps(build_report(self.view)).encode("utf-8")
        return _Serving(self, body, **kwargs)

    def test_text_for_a_terminal(self):
        serving = self.serving()
        status, out, err = self.run_cli("--url", serving.where)
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("mqttd report at "))
        self.assertIn("  127.0.0.7", out)

    def test_json_for_scripts(self):
        serving = self.serving()
        status, out, _ = self.run_cli("--url", serving.where, "--json")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out)["top_ips"]["by_connections"][0]["ip"], "127.0.0.7")

    def test_over_a_unix_socket_named_by_the_configuration(self):
        folder = tempfile.mkdtemp(prefix="mqttd-report-")  # short: AF_UNIX paths are
        self.addCleanup(shutil.rmtree, folder)              # at most 107 bytes
        path = os.path.join(folder, "http.sock")
        self.serving(unix=path)
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write(f'[manage]\nhttp_listen = "unix:{path}"\n')
        status, out, _ = self.run_cli("--config", config, "--json")
        self.assertEqual(status, 0)
        self.assertIn("top_ips", json.loads(out))

    def test_an_appliance_not_running_is_one_line(self):
        serving = _Serving(self, b"{}")
        where = serving.where
        serving.server.shutdown()
        serving.server.server_close()
        status, out, err = self.run_cli("--url", where)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("cannot ask the appliance at", err)

    def test_an_error_answer_and_a_non_report_are_one_line(self):
        serving = _Serving(self, b"the report is served to loopback peers only", status=403)
        with self.assertRaises(ReportError) as caught:
            fetch_report(serving.where)
        self.assertIn("403", str(caught.exception))
        other = _Serving(self, b"<html>")
        with self.assertRaises(ReportError) as caught:
            fetch_report(other.where)
        self.assertIn("did not answer with a JSON report", str(caught.exception))

    def test_an_ephemeral_http_listen_asks_for_url(self):
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write('[manage]\nhttp_listen = "tcp:0:interface=127.0.0.1"\n')
        status, _, err = self.run_cli("--config", config)
        self.assertEqual(status, 1)
        self.assertIn("--url", err)

    def test_a_bad_configuration_is_one_line(self):
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write('[manage]\nmanhole_listen = "tcp:9884"\n')
        status, _, err = self.run_cli("--config", config)
        self.assertEqual(status, 1)
        self.assertIn("configuration error: manage.manhole_listen", err)
