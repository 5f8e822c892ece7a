"""The import rules of DESIGN.md that keep config as data and the tiers apart, and the
tests' own: a test module imports shared fakes from a support package, never from
another test module.

Checked from the source (every ``import``/``from`` statement, module level or not), so a
new arrow that breaks a rule fails here before it hardens into the structure.
"""
import ast
import os

from twisted.trial import unittest

import mqttd

_ROOT = os.path.dirname(mqttd.__file__)
_TESTS = os.path.dirname(os.path.abspath(__file__))


def _imports(relative, root=_ROOT, top="mqttd"):
    """The ``top`` modules that ``relative`` (a file or folder under ``root``, the folder
    of package ``top``) imports."""
    path = os.path.join(root, relative)
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
        package = [top, *os.path.relpath(os.path.dirname(name), root).split(os.sep)]
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
    return {module for module in found if module.split(".")[0] == top}


_CONFIG_MODULES = ("config.py", "config_sections.py", "config_checks.py",
                   "config_auth.py", "config_cluster.py")


def _under(modules, *packages):
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


class LayeringTests(unittest.TestCase):
    def test_config_imports_no_tier(self):
        for module in _CONFIG_MODULES:
            self.assertEqual(
                _under(_imports(module), "mqttd.broker", "mqttd.ingest", "mqttd.store",
                       "mqttd.codec", "mqttd.edge"), [], module)

    def test_no_tier_imports_config(self):
        config = [f"mqttd.{name[:-3]}" for name in _CONFIG_MODULES]
        for tier in ("broker", "ingest", "store", "codec", "edge"):
            self.assertEqual(_under(_imports(tier), *config), [], tier)

    def test_codec_and_store_know_no_broker_or_ingest(self):
        for tier in ("codec", "store"):
            self.assertEqual(_under(_imports(tier), "mqttd.broker", "mqttd.ingest"), [], tier)

    def test_the_cluster_wraps_the_edge_and_reads_no_config(self):
        # mqttd.cluster implements the edge's interfaces: the edge never knows of it.
        for tier in ("edge", "broker", "store", "codec", "ingest"):
            self.assertEqual(_under(_imports(tier), "mqttd.cluster"), [], tier)
        config = [f"mqttd.{name[:-3]}" for name in _CONFIG_MODULES]
        self.assertEqual(_under(_imports("cluster"), *config), [])

    def test_broker_sees_only_the_sink_seam(self):
        self.assertEqual(_under(_imports("broker"), "mqttd.ingest"), [])


def _test_modules():
    """Every test module under tests/, as a path relative to tests/."""
    return sorted(os.path.relpath(os.path.join(folder, name), _TESTS)
                  for folder, _, names in os.walk(_TESTS)
                  for name in names if name.startswith("test_") and name.endswith(".py"))


class TestLayeringTests(unittest.TestCase):
    """Shared fakes live in tests/support (and tests/integration/support): a test module
    that imported another would break when that one moves or splits, and trial would
    collect an imported test class twice."""

    def test_a_test_module_imports_only_the_support_packages(self):
        wrong = {}  # every offender at once, for whoever merges a branch that adds one
        for module in _test_modules():
            allowed = ["tests.support"]
            if module.startswith("integration" + os.sep):
                allowed.append("tests.integration.support")
            imported = _under(_imports(module, _TESTS, "tests"), "tests")
            outside = sorted(set(imported) - set(_under(imported, *allowed)))
            if outside:
                wrong[module] = outside
        self.assertEqual(wrong, {})

    def test_support_imports_no_test_module(self):
        for support in ("support", os.path.join("integration", "support")):
            imported = _imports(support, _TESTS, "tests")
            self.assertEqual(
                sorted(m for m in imported if m.split(".")[-1].startswith("test_")), [], support)
