"""The gate's config keys: [auth]'s token keys and [flapping_detect], with their
defaults, and a bad value stopping start-up with one line naming the key."""
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config


class GateConfigTests(unittest.TestCase):
    def test_defaults(self):
        config = parse_config({})
        auth, flapping = config.auth, config.flapping_detect
        self.assertEqual((auth.require_password, auth.rate_per_token, auth.rate_burst,
                          auth.negative_cache_ttl, auth.token_cache_size, auth.reload_interval),
                         (False, 4.0, 4, 10.0, 100_000, 0.5))
        self.assertEqual((flapping.enable, flapping.max_count, flapping.window_time,
                          flapping.ban_time, flapping.by_username, flapping.by_ip,
                          flapping.dry_run), (True, 15, 60.0, 300.0, False, False, False))

    def test_values_are_read(self):
        config = parse_config({"auth": {"rate_per_token": 2, "require_password": True},
                               "flapping_detect": {"max_count": 3, "dry_run": True}})
        self.assertEqual((config.auth.rate_per_token, config.auth.require_password), (2.0, True))
        self.assertEqual((config.flapping_detect.max_count, config.flapping_detect.dry_run),
                         (3, True))

    def test_a_bad_value_names_its_key(self):
        for document, key in (
                ({"auth": {"rate_burst": 0}}, "auth.rate_burst"),
                ({"auth": {"rate_per_token": -1.0}}, "auth.rate_per_token"),
                ({"auth": {"negative_cache_ttl": "10"}}, "auth.negative_cache_ttl"),
                ({"auth": {"reload_interval": 0.0}}, "auth.reload_interval"),
                ({"auth": {"token_cache_size": -1}}, "auth.token_cache_size"),
                ({"flapping_detect": {"max_count": 0}}, "flapping_detect.max_count"),
                ({"flapping_detect": {"window_time": 0.0}}, "flapping_detect.window_time"),
                ({"flapping_detect": {"ban_time": 0.0}}, "flapping_detect.ban_time"),
                ({"flapping_detect": {"by_ip": 1}}, "flapping_detect.by_ip"),
                ({"flapping_detect": {"window": 1}}, "flapping_detect.window")):
            with self.assertRaises(ConfigError) as caught:
                parse_config(document)
            message = str(caught.exception)
            self.assertTrue(message.startswith(key + ":"), message)
            self.assertNotIn("\n", message)
