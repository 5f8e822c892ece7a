"""PersistenceService's ``on_loaded``: how a tree worker's Crossing learns that its broker
has read back what it kept, and stops holding what other workers send."""
from twisted.trial import unittest

from mqttd.service import PersistenceService
from tests.support.broker import Harness


class OnLoadedTests(unittest.TestCase):
    def test_called_once_the_broker_has_loaded(self):
        harness = Harness()
        calls = []
        service = PersistenceService(harness.clock, harness.broker,
                                     on_loaded=lambda: calls.append("loaded"))
        service.startService()  # MemoryPersistence loads at once
        self.assertEqual(calls, ["loaded"])
        return service.stopService()
