"""``[cluster]``: embedded by default, a redis:// URL checked at start with a clear
error that never shows its password, and the rules between its keys."""
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config


class ClusterConfigTests(unittest.TestCase):
    def error(self, **cluster):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"cluster": cluster})
        return str(caught.exception)

    def test_embedded_by_default(self):
        config = parse_config({})
        self.assertEqual(config.cluster.redis_url, "")
        self.assertTrue(config.cluster.node_name)  # the host's name

    def test_a_redis_url(self):
        config = parse_config({"cluster": {"redis_url": "redis://:s3cret@10.0.0.5:6380/2",
                                           "node_name": "mqttd-1"}})
        self.assertNotIn("s3cret", repr(config.cluster))
        self.assertEqual(config.cluster.node_name, "mqttd-1")

    def test_bad_urls_say_what_is_wrong_without_the_password(self):
        for url, why in (("http://x:1", "must start with redis://"),
                         ("redis://", "has no host"),
                         ("redis://h:0", "port must be 1..65535"),
                         ("redis://h/zero", "must be a number"),
                         ("redis://h/0?x=1", "no ?query")):
            message = self.error(redis_url=url)
            self.assertTrue(message.startswith("cluster.redis_url: "), message)
            self.assertIn(why, message)
        self.assertNotIn("pw", self.error(redis_url="rediss://u:pw@h"))

    def test_names_and_prefixes_are_visible_ascii(self):
        self.assertIn("cluster.node_name", self.error(node_name="two words"))
        self.assertIn("cluster.node_name", self.error(node_name=""))
        self.assertIn("cluster.key_prefix", self.error(key_prefix=""))

    def test_backoff_and_heartbeat_rules(self):
        self.assertIn("cluster.reconnect_initial: must be at most cluster.reconnect_max",
                      self.error(reconnect_initial=20.0, reconnect_max=10.0))
        self.assertIn("cluster.node_ttl: must be at least 3 x cluster.timeout",
                      self.error(timeout=1.0, node_ttl=2.9))
        parse_config({"cluster": {"timeout": 1.0, "node_ttl": 3.0}})

    def test_bounds(self):
        self.assertIn("cluster.timeout", self.error(timeout=0.0))
        self.assertIn("cluster.max_ban_log", self.error(max_ban_log=10))
