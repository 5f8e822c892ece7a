"""The packaged systemd unit bounds the service's memory (a backstop to mqttd's own bounds).

packaging/check-deb.sh checks the installed unit too; this reads the source, so a unit
that loses the line fails in the unit suite, without building the package.
"""
import configparser
import os

from twisted.trial import unittest

UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "debian", "mqttd.service")


class UnitTests(unittest.TestCase):
    def test_memory_max_is_a_share_of_ram(self):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str
        with open(UNIT, encoding="utf-8") as f:
            unit.read_file(f)
        value = unit.get("Service", "MemoryMax", fallback=None)
        self.assertIsNotNone(value, "mqttd.service sets no MemoryMax")
        self.assertTrue(value.endswith("%"), value)
        self.assertLess(int(value[:-1]), 100)
