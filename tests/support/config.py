"""``ConfigErrorAssertions``: a TestCase mixin whose ``assertConfigError`` checks that a
config document stops start-up with exactly the one line the operator reads. Shared by
the config tests and the tests of each tier's own keys.
"""
from mqttd.config import ConfigError, parse_config


class ConfigErrorAssertions:
    def assertConfigError(self, document, message):
        with self.assertRaises(ConfigError) as caught:
            parse_config(document)
        self.assertEqual(str(caught.exception), message)
