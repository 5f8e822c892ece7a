"""The import rules of DESIGN.md that keep config as data and the tiers apart.

Checked from the source (every ``import``/``from`` statement, module level or not), so a
new arrow that breaks a rule fails here before it hardens into the structure.
"""
import ast
import os

from twisted.trial import unittest

import mqttd

_ROOT = os.path.dirname(mqttd.__file__)


def _imports(relative):
    """The mqttd modules that ``relative`` (a file or folder under mqttd/) imports."""
    path = os.path.join(_ROOT, relative)
    files = [path] if path.endswith(".py") else [
        os.path.join(folder, name)
        for folder, _, names in os.walk(path) for name in names if name.endswith(".py")]
    if not files:  # a moved tier must not pass unread
        raise AssertionError(f"no Python source at {path}")
    found = set()
    for name in files:
        with open(name, encoding="utf-8") as f:
            tree = ast.parse(f.read(), name)
        # The package a relative import starts from: mqttd/broker/x.py is in mqttd.broker.
        package = ["mqttd", *os.path.relpath(os.path.dirname(name), _ROOT).split(os.sep)]
        package = [part for part in package if part != os.curdir]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                if node.module:
                    found.add(".".join([*base, node.module]))
                else:  # from . import config: the names are modules
                    found.update(".".join([*base, alias.name]) for alias in node.names)
    return {module for module in found if module.split(".")[0] == "mqttd"}


def _under(modules, *packages):
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


class LayeringTests(unittest.TestCase):
    def test_config_imports_no_tier(self):
        self.assertEqual(
            _under(_imports("config.py"),
                   "mqttd.broker", "mqttd.ingest", "mqttd.store", "mqttd.codec"), [])

    def test_no_tier_imports_config(self):
        for tier in ("broker", "ingest", "store", "codec"):
            self.assertEqual(_under(_imports(tier), "mqttd.config"), [], tier)

    def test_codec_and_store_know_no_broker_or_ingest(self):
        for tier in ("codec", "store"):
            self.assertEqual(_under(_imports(tier), "mqttd.broker", "mqttd.ingest"), [], tier)

    def test_broker_sees_only_the_sink_seam(self):
        self.assertEqual(_under(_imports("broker"), "mqttd.ingest"), [])
