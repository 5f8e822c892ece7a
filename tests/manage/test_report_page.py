"""/report on the manage site: the report as JSON, to loopback peers only."""
import json

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.test.requesthelper import DummyRequest

from mqttd.manage.http import manage_site
from mqttd.manage.report import build_report
from tests.support.manage import ApplianceCase


class ReportPageTests(ApplianceCase):
    def setUp(self):
        super().setUp()
        self.site = manage_site(self.tree.families, lambda: (True, "ok"),
                                lambda: build_report(self.view))

    def get(self, client):
        request = DummyRequest([b"report"])
        request.client = client
        body = self.site.getResourceFor(request).render(request)
        return request.responseCode or 200, request, body

    def test_a_loopback_peer_gets_the_report_as_json(self):
        self.admit("10.0.0.7")
        for client in (IPv4Address("TCP", "127.0.0.1", 5000), IPv6Address("TCP", "::1", 5000),
                       UNIXAddress(None)):
            status, request, body = self.get(client)
            self.assertEqual(status, 200)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                             [b"application/json"])
            report = json.loads(body)
            self.assertEqual(report["top_ips"]["by_connections"][0]["ip"], "10.0.0.7")

    def test_another_peer_is_refused_even_where_metrics_face_the_network(self):
        status, _, body = self.get(IPv4Address("TCP", "192.0.2.10", 5000))
        self.assertEqual(status, 403)
        self.assertNotIn(b"top_ips", body)

    def test_without_a_report_there_is_no_page(self):
        site = manage_site(self.tree.families, lambda: (True, "ok"))
        request = DummyRequest([b"report"])
        site.getResourceFor(request).render(request)
        self.assertEqual(request.responseCode, 404)
