"""The data dir and the database are the appliance user's alone (issue 11, point 2).

sqlite3 created mqttd.db (and its -wal, -shm) 0644 and the data dir was 0755: every
local user could read every message. And a user with an empty password let in any
CONNECT that sent that username with an empty password.
"""
import os
import stat

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config
from mqttd.service import build_service
from mqttd.store.sqlite import SqliteStore
from tests.support.store import make_dir, row


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class FileModeTests(unittest.TestCase):
    def setUp(self):
        old = os.umask(0o022)  # the usual umask: 0644 files, 0755 directories
        self.addCleanup(os.umask, old)

    @defer.inlineCallbacks
    def test_data_dir_and_database_files_are_private(self):
        data_dir = os.path.join(self.mktemp(), "var")
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": data_dir,
                                          "listen": ["tcp:0:interface=127.0.0.1"]}})
        root = build_service(config, reactor)
        self.assertEqual(mode(data_dir), 0o700)
        store = root.ingest.store
        yield store.start()
        self.addCleanup(store.close)
        yield store.insert_batch([row("k1")])
        names = sorted(os.listdir(data_dir))
        self.assertEqual(names, ["mqttd.db", "mqttd.db-shm", "mqttd.db-wal"])
        for name in names:
            self.assertEqual(mode(os.path.join(data_dir, name)), 0o600, name)

    @defer.inlineCallbacks
    def test_a_store_creating_its_file_makes_it_private(self):
        store = SqliteStore.in_data_dir(reactor, make_dir(self))
        yield store.start()
        self.addCleanup(store.close)
        self.assertEqual(mode(store.path), 0o600)

    def test_an_existing_database_open_to_others_is_kept_with_a_warning(self):
        data_dir = make_dir(self)
        path = os.path.join(data_dir, "mqttd.db")
        open(path, "wb").close()
        os.chmod(path, 0o644)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        # workers = 0: build_service builds the one process (the default is the tree).
        root = build_service(parse_config({"server": {"workers": 0, "data_dir": data_dir}}), reactor)
        root.ingest.startService()
        self.addCleanup(root.ingest.stopService)
        self.assertEqual(mode(path), 0o644)
        warnings = [e["log_format"].format(**e) for e in events if e.get("path") == path]
        self.assertEqual(warnings, [f"database {path} is open to other users (mode 0644); every "
                                    f"message is in it: chmod 600 {path} (and its -wal, -shm "
                                    f"files)"])


class EmptyPasswordTests(unittest.TestCase):
    def test_an_empty_password_stops_start_up(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"auth": {"users": [{"username": "a", "password": "p"},
                                             {"username": "dev-2", "password": ""}]}})
        self.assertEqual(str(caught.exception),
                         "auth.users[1].password: must not be empty (user 'dev-2')")
        with self.assertRaises(ConfigError) as caught:
            parse_config({"auth": {"users": [{"username": "dev-3"}]}})
        self.assertEqual(str(caught.exception),
                         "auth.users[0].password: must not be empty (user 'dev-3')")
        config = parse_config({"auth": {"users": [{"username": "a", "password": "hidden-pw"}]}})
        self.assertNotIn("hidden-pw", repr(config))
