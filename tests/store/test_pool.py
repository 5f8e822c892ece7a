"""OnOwnConnection: one connection opened on the store's own pool at start, used by
``_on_conn`` and closed at close; calls outside start..close fail with StoreClosed."""
from twisted.trial import unittest

from mqttd.store.pool import OnOwnConnection, StoreClosed
from tests.support.store import InlinePool, InlineReactor


class FakeConnection:
    def __init__(self, path):
        self.path = path
        self.closed = False

    def close(self):
        self.closed = True


class Store(OnOwnConnection):
    def __init__(self, pool, connect):
        super().__init__(InlineReactor(), "/data/mqttd.db", pool, "test", connect)

    def ask(self, *args):
        return self._on_conn(lambda conn, *more: (conn, more), *args)


class OnOwnConnectionTests(unittest.TestCase):
    def setUp(self):
        self.pool = InlinePool()
        self.made = []
        self.store = Store(self.pool, self.connect)

    def connect(self, path):
        self.made.append(FakeConnection(path))
        return self.made[-1]

    def test_start_opens_one_connection_on_the_pool_and_calls_get_it(self):
        self.successResultOf(self.store.start())
        self.successResultOf(self.store.start())  # idempotent
        self.assertTrue(self.pool.started)
        self.assertEqual([c.path for c in self.made], ["/data/mqttd.db"])
        conn, args = self.successResultOf(self.store.ask(1, "two"))
        self.assertIs(conn, self.made[0])
        self.assertEqual(args, (1, "two"))

    def test_close_closes_the_connection_and_stops_the_pool(self):
        self.successResultOf(self.store.start())
        self.successResultOf(self.store.close())
        self.successResultOf(self.store.close())  # idempotent
        self.assertTrue(self.made[0].closed)
        self.assertFalse(self.pool.started)
        self.failureResultOf(self.store.ask(), StoreClosed)

    def test_a_call_before_start_fails(self):
        self.failureResultOf(self.store.ask(), StoreClosed)
        self.assertEqual(self.made, [])

    def test_a_failed_connect_fails_start_and_stops_the_pool(self):
        store = Store(self.pool, lambda path: 1 / 0)
        self.failureResultOf(store.start(), ZeroDivisionError)
        self.assertFalse(self.pool.started)
        self.failureResultOf(store.ask(), StoreClosed)
