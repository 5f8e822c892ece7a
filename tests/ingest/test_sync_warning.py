"""ingest.synchronous other than FULL weakens the promise: start-up says how (point 10)."""
from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from mqttd.config import parse_config
from mqttd.service import build_service


class SynchronousWarningTests(unittest.TestCase):
    def warnings_at_start(self, synchronous):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp()},
                               "ingest": {"synchronous": synchronous}})
        ingest = build_service(config, reactor).ingest
        ingest.startService()
        self.addCleanup(ingest.stopService)
        return [e["log_format"].format(**e) for e in events if "synchronous" in e]

    def test_normal_and_off_name_what_they_weaken(self):
        self.assertEqual(self.warnings_at_start("NORMAL"), [
            "ingest.synchronous = NORMAL: commits are not fsynced as they happen, so "
            "acknowledged messages can be lost on power loss or an OS crash (a crash of "
            "mqttd alone loses nothing); FULL keeps every acknowledged message"])
        self.assertEqual(self.warnings_at_start("OFF"), [
            "ingest.synchronous = OFF: SQLite never fsyncs, so acknowledged messages can be "
            "lost, and the database corrupted, on power loss or an OS crash; FULL keeps "
            "every acknowledged message"])
        self.assertEqual(self.warnings_at_start("FULL"), [])
