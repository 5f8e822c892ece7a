"""What one broker says of its live connections (``describe_clients``), on the broker
harness: filters, the token never shown, and the two bounds."""
import json

from twisted.internet.defer import succeed
from twisted.trial import unittest

from mqttd.broker.admission import AuthResult
from mqttd.codec import Subscribe
from mqttd.manage.client_list import ClientFilter, describe_clients
from tests.support.broker import Client, Harness


class _Anyone:
    """Lets every CONNECT in, a token user (``tok-...``) in account acme."""

    def authenticate(self, client_id, username, password, peer=None):
        account = "acme" if username and username.startswith("tok-") else None
        return succeed(AuthResult(0, account=account))


class DescribeTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness(authenticator=_Anyone())

    def connect(self, client_id, address="192.0.2.7", **kwargs):
        client = Client(self.harness, address=address)
        client.connect(client_id, **kwargs)
        return client

    def describe(self, limit=100, static=frozenset({"alice"}), max_bytes=1 << 20, **wanted):
        return describe_clients(self.harness.broker, "mqttd-worker-2", ClientFilter(**wanted),
                                limit, static, max_bytes)

    def test_each_live_connection_with_its_session(self):
        sub = self.connect("sub", clean=False)
        sub.send(Subscribe(1, (("a/#", 1), ("b", 0))))
        self.connect("plain", address="10.1.2.3", username="alice", password=b"x")
        answer = self.describe()
        self.assertEqual(answer["matched"], 2)
        plain, first = answer["clients"]
        self.assertEqual((plain["client_id"], plain["username"], plain["peer"][:9],
                          plain["process"], plain["clean"]),
                         ("plain", "alice", "10.1.2.3:", "mqttd-worker-2", True))
        self.assertEqual((first["client_id"], first["clean"], first["subscriptions"]),
                         ("sub", False, 2))
        json.dumps(answer)  # what crosses the channel

    def test_offline_sessions_are_not_listed(self):
        self.connect("gone", clean=False).disconnect()
        self.assertEqual(self.describe(), {"clients": [], "matched": 0})

    def test_a_token_username_is_shown_by_its_prefix_only(self):
        self.connect("dev", username="tok-0123456789abcdef")
        (entry,) = self.describe()["clients"]
        self.assertEqual((entry["username"], entry["account"]), ("token tok-01", "acme"))
        self.assertNotIn("0123456789abcdef", json.dumps(entry))

    def test_filters_by_ip_network_account_and_client_id_glob(self):
        self.connect("dev-1", address="10.0.0.1")
        self.connect("dev-2", address="10.0.0.2", username="tok-aaaaaaaaaaaa")
        self.connect("other", address="192.0.2.9")
        ids = lambda **wanted: [c["client_id"] for c in self.describe(**wanted)["clients"]]
        self.assertEqual(ids(ip="10.0.0.0/24"), ["dev-1", "dev-2"])
        self.assertEqual(ids(ip="10.0.0.2"), ["dev-2"])
        self.assertEqual(ids(ip="::ffff:10.0.0.1"), ["dev-1"])
        self.assertEqual(ids(account="acme"), ["dev-2"])
        self.assertEqual(ids(client_id="dev-?"), ["dev-1", "dev-2"])
        self.assertEqual(ids(client_id="dev"), [])
        self.assertEqual(ids(client_id="other", ip="10.0.0.0/8"), [])

    def test_a_filter_that_cannot_match_is_an_error(self):
        with self.assertRaises(ValueError):
            ClientFilter(ip="10.0.0.300")
        with self.assertRaises(ValueError):
            ClientFilter(client_id=5)

    def test_at_most_limit_entries_and_max_bytes_of_them(self):
        for n in range(20):
            self.connect(f"c{n:02d}")
        answer = self.describe(limit=5)
        self.assertEqual(([c["client_id"] for c in answer["clients"]], answer["matched"]),
                         (["c00", "c01", "c02", "c03", "c04"], 20))
        small = self.describe(max_bytes=600)
        self.assertLess(len(json.dumps(small["clients"])), 600)
        self.assertGreater(len(small["clients"]), 0)
        self.assertEqual(small["matched"], 20)
