"""The README's configuration tables name every key the loader accepts, with its default,
and its table of metric names every family /metrics serves, with its kind.

An operator reads the README, not config.py: a key added without its row is a setting
nobody can find, and a row for a key that no longer exists is a claim the appliance
does not keep.
"""
import os
import re
import socket
import tomllib

import attrs
from twisted.trial import unittest

from mqttd.config import Config
from mqttd.cores import usable_cores

#: Defaults that depend on the host, so the table says them in words: the words, and
#: what they come to on this host.
_FROM_THE_HOST = {"one per usable core": usable_cores, "the host's name": socket.gethostname}

_README = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "README.md")


def _keys():
    for section in attrs.fields(Config):
        for field in attrs.fields(section.type):
            yield f"{section.name}.{field.name}"


class ReadmeTests(unittest.TestCase):
    def setUp(self):
        with open(_README, encoding="utf-8") as f:
            self.text = f.read()

    def test_every_key_has_a_row(self):
        rows = [line for line in self.text.splitlines() if line.startswith("| `")]
        missing = [key for key in _keys() if not any(f"`{key}`" in row for row in rows)]
        self.assertEqual(missing, [])

    def test_every_row_names_a_real_key(self):
        sections = {section.name for section in attrs.fields(Config)}
        named = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", self.text, re.M))
        named |= set(re.findall(r", `([a-z_]+\.[a-z_]+)`", self.text))
        named = {key for key in named if key.split(".")[0] in sections}
        self.assertEqual(sorted(named - set(_keys())), [])

    def test_every_row_shows_the_default(self):
        """The default column is the TOML literal of Config()'s value (a row naming two
        keys shows two values), so the table cannot drift from the code; a default
        taken from the host is in words (``_FROM_THE_HOST``) and checked on this one."""
        defaults = Config()
        sections = {section.name for section in attrs.fields(Config)}
        wrong, checked = [], 0
        for key_cell, default_cell in re.findall(r"^\| (`[^|]*`) \| ([^|]*) \|", self.text, re.M):
            keys = re.findall(r"`([a-z_]+)\.([a-z_]+)`", key_cell)
            if not keys or keys[0][0] not in sections:
                continue  # another table's row
            if default_cell in _FROM_THE_HOST:
                shown = [_FROM_THE_HOST[default_cell]()]
            else:
                try:
                    shown = tomllib.loads(f"v = [{default_cell.replace('`', '')}]")["v"]
                except tomllib.TOMLDecodeError:
                    self.fail(f"{key_cell}: default {default_cell!r} is not a TOML literal")
            for (section, name), value in zip(keys, shown, strict=True):
                actual = getattr(getattr(defaults, section), name)
                if type(actual) is tuple:  # a list, or a table kept as (name, value) pairs
                    actual = dict(actual) if type(value) is dict else list(actual)
                checked += 1
                if (type(actual), actual) != (type(value), value):  # 1 is not true, 15 not 15.0
                    wrong.append((f"{section}.{name}", value, actual))
        self.assertEqual(wrong, [])
        self.assertEqual(checked, len(list(_keys())))


class MetricTableTests(unittest.TestCase):
    """"Metric names" in the README: a row per family of the registry (and the derived
    gauges), its series as Prometheus names them and its kind."""

    def test_every_family_has_a_row_with_its_kind(self):
        from mqttd.manage.snapshots import META
        with open(_README, encoding="utf-8") as f:
            rows = {}
            for line in f:
                found = re.match(r"^\| `([a-z0-9_]+?)(_total|_bucket\{le\})?`[^|]*\| (counter|gauge|"
                                 r"histogram) \|", line)
                if found:
                    rows[found.group(1)] = (found.group(2) or "", found.group(3))
        suffix = {"counter": "_total", "gauge": "", "histogram": "_bucket{le}"}
        wrong = [(name, rows.get(name), meta["kind"]) for name, meta in META.items()
                 if rows.get(name) != (suffix[meta["kind"]], meta["kind"])]
        self.assertEqual(wrong, [])
