"""What ``twistd mqttd`` adds for the operator (``add_manage``): on the single process
here (the tree's master in tests/integration/test_manhole.py), the manhole only with a
password file, a bad one stopping start-up in one line, and the door watched."""
import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mqttd.config import parse_config
from mqttd.errors import ConfigError
from mqttd.manage.manhole import ManholeService
from mqttd.manage.http import ManageHTTP
from mqttd.manage.wiring import add_manage
from mqttd.service import build_service
from mqttd.tap import Options, makeService


class AddManageTests(unittest.TestCase):
    def setUp(self):
        self.data_dir = self.mktemp()
        self.passwd = os.path.abspath(self.mktemp())
        with open(self.passwd, "w") as f:
            f.write("admin:pw\n")
        os.chmod(self.passwd, 0o600)

    def config(self, **manage):
        return parse_config({"server": {"workers": 0, "data_dir": self.data_dir,
                                        "listen": ["tcp:1883:interface=127.0.0.1"]},
                             "manage": manage})

    def children(self, root):
        return [type(service) for service in root]

    def test_the_manhole_comes_with_a_password_file_only(self):
        reactor = MemoryReactorClock()
        root = build_service(self.config(), reactor)
        view = add_manage(reactor, self.config(), root)
        self.assertIn(ManageHTTP, self.children(root))
        self.assertNotIn(ManholeService, self.children(root))
        self.assertEqual(view.mode, "single")
        root.door.admit("10.0.0.1")
        self.assertEqual(view.connect_rates.totals()[0], {"10.0.0.1": 1})
        config = self.config(manhole_password_file=self.passwd, http_listen="")
        root = build_service(config, reactor)
        add_manage(reactor, config, root)
        self.assertIn(ManholeService, self.children(root))
        self.assertNotIn(ManageHTTP, self.children(root))

    def test_a_password_file_that_cannot_be_read_stops_start_up_in_one_line(self):
        config = self.config(manhole_password_file="/nonexistent/manhole.passwd")
        reactor = MemoryReactorClock()
        with self.assertRaises(ConfigError):
            add_manage(reactor, config, build_service(config, reactor))
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f'[server]\nworkers = 0\ndata_dir = "{self.data_dir}"\n'
                    f'[manage]\nmanhole_password_file = "/nonexistent/manhole.passwd"\n')
        options = Options()
        options.parseOptions(["--config", path])
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertEqual(str(caught.exception),
                         "mqttd: configuration error: manage.manhole_password_file: cannot "
                         "read '/nonexistent/manhole.passwd': No such file or directory")
