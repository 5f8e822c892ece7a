"""Which mode each benchmarked mqttd runs in, now that the appliance's default is the tree.

The harness's ``mqttd`` must stay one process (``server.workers = 0``): its stand-ins
patch pieces of that process, and a tree (the new default, one worker per core) would
leave those to unpatched children and measure something else under the same name. The
tree targets say how many workers they run, and the run's header names every mode.
"""
import argparse
import os
import sys

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                          "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import brokers  # noqa: E402


def args(**kw):
    base = dict(mqttd_max_inflight=1000, mqttd_extra_toml=None, mqttd_set=None, core=False,
                nodisk=False, twistd="twistd")
    base.update(kw)
    return argparse.Namespace(**base)


class ModeTests(unittest.TestCase):
    def test_the_harness_mqttd_is_one_process_and_a_tree_says_its_workers(self):
        self.assertEqual(brokers.mqttd_config(args())["server"]["workers"], 0)
        tree = brokers.mqttd_config(args(), brokers.tree_overrides(3))
        self.assertEqual(tree["server"]["workers"], 3)
        chosen = brokers.mqttd_config(args(mqttd_set=[{"server": {"workers": 4}}]))
        self.assertEqual(chosen["server"]["workers"], 4)

    def test_every_mqttd_stand_in_names_its_mode(self):
        tmp = self.mktemp()
        os.makedirs(tmp)
        made = [brokers.make_mqttd(tmp, args(), "mqttd"),
                brokers.make_mqttd(tmp, args(nodisk=True), "mqttd-nodisk"),
                brokers.make_mqttd(tmp, args(core=True), "mqttd-core"),
                brokers.make_mqttd(tmp, args(), "mqttd-nohttp", nohttp=True),
                brokers.make_mqttd(tmp, args(), brokers.tree_name(2),
                                   overrides=brokers.tree_overrides(2))]
        self.assertEqual([b.mode() for b in made], [
            "mqttd, server.workers = 0: one process",
            "mqttd-nodisk, server.workers = 0: one process",
            "mqttd-core, server.workers = 0: one process",
            "mqttd-nohttp, server.workers = 0: one process",
            "mqttd, server.workers = 2: master, 2 workers, ingest"])
        with open(os.path.join(tmp, "mqttd", "mqttd.toml")) as f:
            self.assertIn("workers = 0", f.read())
