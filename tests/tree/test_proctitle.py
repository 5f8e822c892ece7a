"""Process names: the argv of a child keeps this interpreter as argv[0] (its virtualenv)
and carries the name after the module; a process sets its comm, cut to 15 bytes."""
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutput
from twisted.trial import unittest

from mqttd.tree.proctitle import CHILD_MODULE, child_argv, process_name

_SHOW_NAME = ("import sys; from mqttd.tree.proctitle import set_process_name; "
              "print(set_process_name(sys.argv[1]), open('/proc/self/comm').read().strip(), "
              "open('/proc/self/cmdline').read().split(chr(0))[-2])")


class ProcessNameTests(unittest.TestCase):
    def test_names_of_the_roles_fit_the_comm(self):
        self.assertEqual(process_name("master"), "mqttd-master")
        self.assertEqual(process_name("worker", 3), "mqttd-worker-3")
        self.assertLessEqual(len(process_name("worker", 99)), 15)

    def test_a_child_runs_the_module_with_this_interpreter_and_the_name_last(self):
        self.assertEqual(child_argv("mqttd-worker-1"),
                         [sys.executable, "-m", CHILD_MODULE, "mqttd-worker-1"])
        self.assertEqual(CHILD_MODULE, "mqttd.tree.child")

    def test_a_process_sets_its_comm_cut_to_15_bytes(self):
        output = getProcessOutput(sys.executable, ["-c", _SHOW_NAME, "mqttd-worker-12345"],
                                  env=None, reactor=reactor)
        output.addCallback(self.assertEqual, b"True mqttd-worker-12 mqttd-worker-12345\n")
        return output
