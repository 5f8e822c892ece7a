"""The [limits] section: the door's per-address limits, bans and allowlist."""
from twisted.trial import unittest

from mqttd.config import Config, LimitsConfig, parse_config
from tests.support.config import ConfigErrorAssertions


class LimitsDefaultsTests(unittest.TestCase):
    def test_defaults_spare_nated_fleets_and_local_proxies(self):
        limits = Config().limits
        self.assertEqual(limits, LimitsConfig())
        self.assertEqual((limits.max_conn_per_ip, limits.max_conn_rate_per_ip,
                          limits.conn_rate_burst), (1000, 100.0, 200))
        self.assertEqual(limits.allowlist, ("127.0.0.0/8", "::1"))
        self.assertEqual(limits.banned, ())

    def test_lists_of_addresses_and_networks_of_both_versions(self):
        limits = parse_config({"limits": {
            "allowlist": ["10.0.0.0/8", "2001:db8::/32"],
            "banned": ["192.0.2.7", "::ffff:198.51.100.0/120", "fe80::1%eth0"],
            "max_conn_per_ip": 0, "max_conn_rate_per_ip": 0, "conn_rate_burst": 1}}).limits
        self.assertEqual(limits.allowlist, ("10.0.0.0/8", "2001:db8::/32"))
        self.assertEqual(limits.banned[0], "192.0.2.7")
        self.assertEqual(limits.max_conn_rate_per_ip, 0.0)  # a TOML integer, taken as a number


class LimitsErrorTests(ConfigErrorAssertions, unittest.TestCase):
    def test_an_entry_that_is_no_address_names_its_index(self):
        self.assertConfigError(
            {"limits": {"allowlist": ["10.0.0.0/8", "::1", "x"]}},
            "limits.allowlist[2]: not an IP address or network: 'x'")
        self.assertConfigError(
            {"limits": {"banned": ["10.0.0.0/33"]}},
            "limits.banned[0]: not an IP address or network: '10.0.0.0/33'")
        self.assertConfigError(
            {"limits": {"banned": ["example.com"]}},
            "limits.banned[0]: not an IP address or network: 'example.com'")

    def test_bits_past_the_prefix_are_a_typo_not_a_network(self):
        self.assertConfigError(
            {"limits": {"banned": ["10.1.2.3/8"]}},
            "limits.banned[0]: '10.1.2.3/8' has bits set past its prefix "
            "(the network is 10.0.0.0/8)")

    def test_entries_are_strings(self):
        self.assertConfigError({"limits": {"banned": [10]}},
                               "limits.banned[0]: must be a string, got 10")
        self.assertConfigError({"limits": {"allowlist": "10.0.0.0/8"}},
                               "limits.allowlist: must be a list, got '10.0.0.0/8'")

    def test_bounds(self):
        self.assertConfigError({"limits": {"max_conn_per_ip": -1}},
                               "limits.max_conn_per_ip: must be 0..100000000, got -1")
        self.assertConfigError({"limits": {"max_conn_rate_per_ip": -0.5}},
                               "limits.max_conn_rate_per_ip: must be 0.0..1000000.0, got -0.5")
        self.assertConfigError({"limits": {"conn_rate_burst": 0}},
                               "limits.conn_rate_burst: must be 1..1000000, got 0")
        self.assertConfigError({"limits": {"max_conn_per_ip": 1.5}},
                               "limits.max_conn_per_ip: must be an integer, got 1.5")

    def test_an_unknown_key(self):
        self.assertConfigError(
            {"limits": {"max_conn_rate": 5}},
            "limits.max_conn_rate: unknown key (known: allowlist, banned, conn_rate_burst, "
            "max_conn_per_ip, max_conn_rate_per_ip)")
