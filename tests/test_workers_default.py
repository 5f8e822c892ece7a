"""``server.workers`` defaults to the cores this process may run on, and the master's
number is what its children get: a child pinned to fewer cores must not resolve its own.

The child side runs in a real subprocess whose affinity is cut to one core, as a
``taskset`` or a container's cpuset would do it.
"""
import json
import os
import subprocess
import sys

from twisted.trial import unittest

from mqttd.config import Config, config_document, parse_config
from mqttd.cores import MAX_WORKERS, usable_cores


def _on_one_core(code, stdin=""):
    """Run ``code`` in a Python child allowed a single core; its stdout, stripped."""
    one = {min(os.sched_getaffinity(0))}
    done = subprocess.run([sys.executable, "-c", code], input=stdin, text=True,
                          capture_output=True, timeout=60, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, one))
    return done.stdout.strip()


class DefaultTests(unittest.TestCase):
    def test_the_default_is_the_usable_cores(self):
        self.assertEqual(Config().server.workers, len(os.sched_getaffinity(0)))
        self.assertEqual(parse_config({}).server.workers, usable_cores())
        self.assertTrue(1 <= usable_cores() <= MAX_WORKERS)

    def test_the_affinity_mask_counts_not_the_machine(self):
        self.assertEqual(_on_one_core(
            "from mqttd.config import parse_config; print(parse_config({}).server.workers)"),
            "1")

    def test_zero_still_means_one_process(self):
        self.assertEqual(parse_config({"server": {"workers": 0}}).server.workers, 0)


class ChildTests(unittest.TestCase):
    def test_a_child_gets_the_masters_number_not_its_own(self):
        document = config_document(parse_config({}))
        self.assertEqual(document["server"]["workers"], usable_cores())
        seen = _on_one_core(
            "import json, sys; from mqttd.config import parse_config; "
            "print(parse_config(json.load(sys.stdin)).server.workers)",
            stdin=json.dumps(document))
        self.assertEqual(seen, str(usable_cores()))
