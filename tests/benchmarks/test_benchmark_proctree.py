"""The benchmarks' process-tree sampler counts every process of a broker.

With server.workers >= 1 one twistd is a master, its workers and its ingest child: a
broker's CPU and RSS are the sum over all of them, and the tables split them by
process. A fake /proc checks the parsing and the walk exactly; one real process tree
(a child that starts a grandchild which burns CPU) checks it on this kernel's /proc.
"""
import os
import subprocess
import sys
import tempfile
import time

from twisted.trial import unittest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import common  # noqa: E402
import proctree  # noqa: E402


def stat_line(pid, comm, ppid, utime, stime, cutime=0, cstime=0):
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    return "%d (%s) S %d %d %d 0 -1 4194560 1 0 0 0 %d %d %d %d 20 0 1 0 5 0 0\n" % (
        pid, comm, ppid, pid, pid, utime, stime, cutime, cstime)


class FakeProc:
    def __init__(self, test):
        self.root = tempfile.mkdtemp(prefix="fakeproc-")
        test.addCleanup(lambda: subprocess.run(["rm", "-rf", self.root]))
        os.mkdir(os.path.join(self.root, "self"))  # not a pid: skipped

    def add(self, pid, comm, ppid, utime, stime, cutime=0, cstime=0, rss_kb=1000):
        d = os.path.join(self.root, str(pid))
        os.mkdir(d)
        with open(os.path.join(d, "stat"), "w") as f:
            f.write(stat_line(pid, comm, ppid, utime, stime, cutime, cstime))
        with open(os.path.join(d, "status"), "w") as f:
            f.write("Name:\t%s\n" % comm[:15])
            if rss_kb is not None:
                f.write("VmRSS:\t   %d kB\n" % rss_kb)
            f.write("Threads:\t1\n")


class ParseTests(unittest.TestCase):
    def test_stat_with_spaces_and_parentheses_in_the_comm(self):
        self.assertEqual(proctree.parse_stat(stat_line(7, "a (b) c", 3, 10, 5, 2, 1)),
                         ("a (b) c", 3, 18))

    def test_rss_in_bytes_and_zero_for_a_zombie(self):
        self.assertEqual(proctree.parse_rss("Name:\tx\nVmRSS:\t   2048 kB\n"), 2048 * 1024)
        self.assertEqual(proctree.parse_rss("Name:\tx\nState:\tZ (zombie)\n"), 0)

    def test_roles(self):
        self.assertEqual([proctree.role(n) for n in (
            "mqttd-master", "mqttd-worker-1", "mqttd-worker-12", "mqttd-ingest", "twistd",
            "mosquitto")], ["master", "workers", "workers", "ingest", "twistd", "mosquitto"])
        self.assertEqual(proctree.by_role({"mqttd-worker-1": 2, "mqttd-worker-2": 3,
                                           "mqttd-master": 1}), {"workers": 5, "master": 1})


class FakeTreeTests(unittest.TestCase):
    def setUp(self):
        self.proc = FakeProc(self)
        p = self.proc
        p.add(100, "mqttd-master", 1, 50, 10, cutime=7, cstime=3)
        p.add(101, "mqttd-worker-1", 100, 200, 20)
        p.add(102, "mqttd-worker-2", 100, 100, 10)
        p.add(103, "mqttd-ingest", 100, 30, 5)
        p.add(104, "sh", 103, 1, 1, rss_kb=None)  # a grandchild, a zombie
        p.add(200, "unrelated", 1, 999, 999)
        p.add(201, "child of other", 200, 999, 999)

    def test_every_descendant_and_nothing_else(self):
        self.assertEqual(proctree.descendants(100, self.proc.root), [100, 101, 102, 103, 104])
        snap = proctree.snapshot(100, self.proc.root)
        self.assertEqual([p.name for p in snap], ["mqttd-master", "mqttd-worker-1",
                                                  "mqttd-worker-2", "mqttd-ingest", "sh"])
        self.assertEqual(proctree.total_ticks(snap), 70 + 220 + 110 + 35 + 2)
        self.assertEqual(proctree.total_rss(snap), 4 * 1000 * 1024)

    def test_cpu_between_snapshots_by_process_counts_a_new_one_from_zero(self):
        before = proctree.snapshot(100, self.proc.root)
        self.proc.add(105, "mqttd-worker-3", 100, 40, 2)
        after = proctree.snapshot(100, self.proc.root)
        self.assertEqual(proctree.ticks_by_name(before, after),
                         {"mqttd-master": 0, "mqttd-worker-1": 0, "mqttd-worker-2": 0,
                          "mqttd-ingest": 0, "sh": 0, "mqttd-worker-3": 42})

    def test_a_gone_root_is_an_empty_snapshot_and_a_gone_child_is_left_out(self):
        self.assertEqual(proctree.snapshot(999, self.proc.root), [])
        self.assertIsNone(proctree.total_ticks([]))
        os.unlink(os.path.join(self.proc.root, "102", "status"))
        self.assertEqual([p.pid for p in proctree.snapshot(100, self.proc.root)],
                         [100, 101, 103, 104])


BURNER = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    "print('burnt', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
print(child.pid, flush=True)
child.stdout.readline()
print("done", flush=True)
time.sleep(30)
"""


class RealTreeTests(unittest.TestCase):
    def test_a_grandchilds_cpu_counts_in_the_tree_and_under_its_own_pid(self):
        parent = subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
        self.addCleanup(lambda: (os.killpg(parent.pid, 9), parent.wait()))
        grandchild = int(parent.stdout.readline())
        before = proctree.snapshot(parent.pid)
        self.assertEqual(parent.stdout.readline().strip(), "done")
        time.sleep(0.05)
        after = proctree.snapshot(parent.pid)
        self.assertIn(grandchild, proctree.descendants(parent.pid))
        own = {p.pid: p.ticks for p in after}
        self.assertGreaterEqual(own[grandchild], 0.2 * common.CLK_TCK)
        # the tree's total holds the grandchild's CPU, the parent's own figure does not
        self.assertGreaterEqual(common.tree_cpu_ticks(parent.pid) - own[parent.pid],
                                own[grandchild])
        self.assertEqual(proctree.total_ticks(after), common.tree_cpu_ticks(parent.pid))
        self.assertEqual(set(proctree.ticks_by_name(before, after)), {p.name for p in after})
        self.assertEqual(common.tree_rss(parent.pid, tree=True) > common.read_rss(parent.pid),
                         True)


class SteadyRssTests(unittest.TestCase):
    def test_a_tree_that_stopped_growing_is_steady_after_two_quiet_steps(self):
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        self.addCleanup(lambda: (sleeper.kill(), sleeper.wait()))
        time.sleep(0.3)  # past the interpreter's start
        waited = common.wait_rss_steady(sleeper.pid, step=0.05, within=1 << 20, timeout=5.0)
        self.assertGreaterEqual(waited, 0.1)
        self.assertLess(waited, 2.0)

    def test_a_tree_still_growing_is_waited_for_up_to_the_timeout(self):
        grower = subprocess.Popen([sys.executable, "-c",
                                   "import time\nx = []\nwhile True:\n"
                                   "    x.append(b'x' * (1 << 20)); time.sleep(0.02)"])
        self.addCleanup(lambda: (grower.kill(), grower.wait()))
        waited = common.wait_rss_steady(grower.pid, step=0.05, within=1 << 18, timeout=0.5)
        self.assertGreaterEqual(waited, 0.5)
