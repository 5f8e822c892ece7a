"""A broker whose messages are really committed to mqttd.db and whose sessions are
really saved to sessions-<slot>.db, all on the calling thread (``InlinePool``) and a
``task.Clock``: deterministic tests of what survives a restart.

``Appliance(dir)`` is one run of the broker on ``dir``; "a crash" is simply building
the next ``Appliance`` on the same ``dir`` without stopping the first (nothing is saved
at exit, as with ``kill -9``).
"""
import attrs
from zope.interface import implementer

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.broker.persistence import SqlitePersistence
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.config import AuthConfig, BrokerConfig
from mqttd.store.sessions import SessionsDb, sessions_filename
from mqttd.store.sink import IMessageSink
from mqttd.store.sqlite import DB_FILENAME, SqliteStore, message_row
from tests.support.broker import Harness
from tests.support.store import InlinePool, InlineReactor, fired


@implementer(IMessageSink)
class CommittingSink:
    """The ingest tier in one call: each message committed to mqttd.db before it is
    settled (``SqliteStore.insert_batch`` on an inline pool)."""

    def __init__(self, database):
        self.database = database

    def store(self, message):
        return self.database.insert_batch([message_row(message)])


class Appliance(Harness):
    """One run (a Harness whose own __init__ is not used; ``client()`` is its): mqttd.db's store, the broker with SqlitePersistence (slot ``slot``),
    started (loaded) unless ``start=False``. ``clock`` may be shared between runs so
    time goes on across a restart."""

    def __init__(self, testcase, data_dir, slot=0, clock=None, start=True,
                 authenticator=None, **config):
        self.clock = clock if clock is not None else InlineReactor()
        self.pool = InlinePool()
        self.store = SqliteStore.in_data_dir(self.clock, data_dir, threadpool=InlinePool())
        fired(self.store.start())
        testcase.addCleanup(self.store.close)
        self.sessions_pool = InlinePool()
        self.db = SessionsDb(self.clock, f"{data_dir}/{sessions_filename(slot)}",
                             messages_path=f"{data_dir}/{DB_FILENAME}",
                             threadpool=self.sessions_pool)
        testcase.addCleanup(self._close)
        self.persistence = SqlitePersistence(self.clock, self.db)
        self.config = attrs.evolve(BrokerConfig(), **config)
        self.broker = Broker(self.clock, self.config, CommittingSink(self.store),
                             authenticator or StaticAuthenticator(
                                 AuthConfig(allow_anonymous=True)),
                             persistence=self.persistence)
        self.factory = MQTTServerFactory(self.broker, self.clock)
        self.loading = None
        if start:
            self.loading = self.broker.start()
            fired(self.loading)

    def _close(self):
        self.sessions_pool.hold = False
        while self.sessions_pool.jobs:
            self.sessions_pool.run_next()
        return self.db.close()

    def saved(self):
        """Let the save timer run (more than ``SAVE_INTERVAL``)."""
        self.clock.advance(1.0)

    def rows(self, sql, *params):
        """Rows of the sessions file now (a held save pool lets this read through)."""
        hold, self.sessions_pool.hold = self.sessions_pool.hold, False
        try:
            return fired(self.db.read(sql, *params))
        finally:
            self.sessions_pool.hold = hold
