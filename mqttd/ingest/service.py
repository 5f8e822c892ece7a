"""The built-in ingest tier as a Twisted service: SQLite store, group-commit writer, webhook.

Start-up order matters for the promise and for clear errors:

* ``prepare_database`` runs synchronously from ``makeService``, before the reactor:
  creating the file, WAL and schema migrations happen there, so a database that is
  unreadable or newer than this code stops start-up with one line instead of failing
  every later request.
* The webhook listener binds in ``privilegedStartService`` (like every listener), so
  its address is known before any MQTT client can connect; ``on_address`` hands the
  URL to the broker's webhook client in the same process.
* On stop the listener closes first, then the writer drains (every batch it accepted
  is committed or failed), then the store closes its connection and thread.
"""
import os
import sys

from sqlite_utils import Database
from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.logger import Logger

from mqttd.errors import ConfigError
from mqttd.ingest.resource import build_ingest_site
from mqttd.ingest.wire import PATH
from mqttd.ingest.writer import BatchWriter
from mqttd.listeners import KeyedListener, loopback_refusal
from mqttd.store.schema import SchemaError, migrate, refuse_too_new
from mqttd.store.sqlite import SqliteStore, create_private

log = Logger()


def prepare_database(path):
    """Create or migrate the database at ``path`` now; ConfigError-style failure if not.

    A new file is readable by this user alone (``create_private``).
    """
    try:
        create_private(path)
        db = Database(path)
        try:
            refuse_too_new(db, name=path)  # before WAL: a newer file stays untouched
            db.enable_wal()
            migrate(db, name=path)
        finally:
            db.close()
    except (SchemaError, OSError) as e:
        raise ConfigError(f"server.data_dir: database {path}: {e}") from None
    except Exception as e:  # sqlite3.DatabaseError: not a database, locked, ...
        raise ConfigError(f"server.data_dir: database {path}: {type(e).__name__}: {e}") from None


def not_loopback(address):
    """Why the webhook must not listen on ``address``, or None (loopback, a unix socket).

    The webhook writes straight into the database; its secret guards it, but it faces
    the network only when ``ingest.allow_remote`` says so.
    """
    return loopback_refusal(address, "the webhook writes straight into the database",
                            "ingest.allow_remote")


def warn_if_readable_by_others(path):
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        log.warn("database {path} is open to other users (mode {mode:04o}); every message "
                 "is in it: chmod 600 {path} (and its -wal, -shm files)", path=path, mode=mode)


_WEAKENED = {
    "NORMAL": "commits are not fsynced as they happen, so acknowledged messages can be "
              "lost on power loss or an OS crash (a crash of mqttd alone loses nothing)",
    "OFF": "SQLite never fsyncs, so acknowledged messages can be lost, and the database "
           "corrupted, on power loss or an OS crash",
}


def warn_if_not_full_sync(synchronous):
    """The promise is that an acknowledged message is on disk; only FULL keeps it."""
    weakened = _WEAKENED.get(synchronous)
    if weakened is not None:
        log.warn("ingest.synchronous = {synchronous}: {weakened}; FULL keeps every "
                 "acknowledged message", synchronous=synchronous, weakened=weakened)


class IngestService(MultiService):
    """Store + writer + webhook site on ``endpoint``; ``on_address(url)`` once bound.

    ``secret``: what every request's ``Authorization: Bearer`` must carry
    (``ingest.secret``, or the one made at start; see mqttd.service). ``metrics``: the
    process's registry, which the writer and the resource count into.
    """

    def __init__(self, reactor, config, db_path, endpoint, secret, on_address=None,
                 metrics=None):
        super().__init__()
        self._reactor = reactor
        self._db_path = db_path
        self._synchronous = config.synchronous
        self.store = SqliteStore(reactor, db_path, synchronous=config.synchronous)
        self.writer = BatchWriter(reactor, self.store, config.batch_size,
                                  config.flush_interval, config.max_queue,
                                  config.max_queue_bytes, metrics)
        self.site = build_ingest_site(reactor, self.writer, secret, config.max_body_size,
                                      config.request_timeout, config.max_receiving_bytes)
        self._on_address = on_address
        self._listener = KeyedListener(endpoint, self.site, "ingest.listen", config.listen,
                                       refuse=None if config.allow_remote else not_loopback)
        self._listener.setServiceParent(self)

    def privilegedStartService(self):
        super().privilegedStartService()
        self._listener._waitingForPort.addCallback(self._bound)

    def _bound(self, port):
        address = port.getHost()
        if not isinstance(address, (IPv4Address, IPv6Address)):
            # A unix socket, serving another service's brokers (webhook.url is set;
            # the built-in tier is refused anything but TCP): there is no http URL.
            log.info("ingest webhook listening on {address}", address=address)
            return port
        host = f"[{address.host}]" if ":" in address.host else address.host
        url = f"http://{host}:{address.port}{PATH.decode('ascii')}"
        log.info("ingest webhook listening on {url}", url=url)
        if self._on_address is not None:
            self._on_address(url)
        return port

    def startService(self):
        # Here twistd has dropped privileges (--uid) and the reactor does not run yet:
        # the database must be usable by the user mqttd now runs as, or every commit
        # would fail and every message wait out its ack timeout. One line, exit 1.
        try:
            prepare_database(self._db_path)
        except ConfigError as e:
            raise SystemExit(f"mqttd: {e}") from None
        warn_if_readable_by_others(self._db_path)  # an existing file keeps its mode
        warn_if_not_full_sync(self._synchronous)
        super().startService()
        self.store.start().addErrback(self._store_failed)

    def _store_failed(self, failure):
        # Anything else that keeps the store from opening: a broker that accepts
        # clients and can acknowledge nothing would look up while it is down.
        log.failure("ingest store failed to start; stopping mqttd, which could "
                    "acknowledge nothing", failure)
        self._reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
        self._reactor.stop()

    @inlineCallbacks
    def stopService(self):
        yield super().stopService()  # stop listening
        yield DeferredList([self.writer.close()], consumeErrors=True)
        yield self.store.close()


def exit_failed():
    """End the process with status 1 once the reactor has shut down.

    twistd exits 0 after a reactor.stop(); systemd's Restart=on-failure (and anyone
    checking the status) must see this as the failure it is.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
