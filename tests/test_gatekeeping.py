"""GateService at start: the bans in force are read before the reactor runs, so the
door refuses a banned address from its first accept (before the gate's first poll)."""
import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.config import load_config
from mqttd.gatekeeping import GateService
from mqttd.metrics import Metrics
from mqttd.store.bans import add_ban
from mqttd.store.gate_records import BanRecord
from mqttd.store.sqlite import DB_FILENAME
from tests.support.accounts import gate_db


class StartTests(unittest.TestCase):
    def test_bans_in_force_are_there_before_the_service_starts(self):
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        conn = gate_db(self, os.path.join(data_dir, DB_FILENAME))
        clock = Clock()
        clock.advance(1000.0)
        add_ban(conn, BanRecord("ip", "10.9.0.0/16", "operator", "scanner", 900.0, None))
        add_ban(conn, BanRecord("ip", "10.8.0.1", "flapping", "lapsed", 900.0, 999.0))
        add_ban(conn, BanRecord("clientid", "bad-1", "operator", "", 900.0, None))
        config = load_config(None, {"server.data_dir": data_dir})
        service = GateService(clock, config, Metrics())
        self.addCleanup(service.store.close)
        self.assertTrue(service.bans.ip_banned("10.9.3.4"))
        self.assertFalse(service.bans.ip_banned("10.8.0.1"))  # lifted before the start
        self.assertFalse(service.bans.ip_banned("10.7.0.1"))
