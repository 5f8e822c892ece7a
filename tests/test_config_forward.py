"""server.max_forward_bytes: its default and its bounds (one line naming the key)."""
from twisted.trial import unittest

from mqttd.config import Config, parse_config
from tests.support.config import ConfigErrorAssertions


class MaxForwardBytesTests(ConfigErrorAssertions, unittest.TestCase):
    def test_default_and_bounds(self):
        self.assertEqual(Config().server.max_forward_bytes, 8_388_608)
        config = parse_config({"server": {"workers": 2, "max_forward_bytes": 65_536}})
        self.assertEqual(config.server.max_forward_bytes, 65_536)
        self.assertConfigError({"server": {"max_forward_bytes": 65_535}},
                               "server.max_forward_bytes: must be 65536..1099511627776, "
                               "got 65535")
        self.assertConfigError({"server": {"max_forward_bytes": "8M"}},
                               "server.max_forward_bytes: must be an integer, got '8M'")

