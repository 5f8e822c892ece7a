"""The durable message store: SQLite (through sqlite-utils) on its own one-thread pool.

Why one thread: a sqlite3 connection belongs to the thread that opened it, and SQLite
allows one writer at a time anyway, so every call (open, migrate, insert, read, close)
is queued on a ``ThreadPool(1, 1)`` and comes back as a Deferred; the reactor never
blocks on disk.

Why an upsert clause and not ``INSERT OR IGNORE``: both make a retried batch harmless (a
key already stored is skipped, so rows are never duplicated), but OR IGNORE also silently
skips rows that break NOT NULL or CHECK constraints, which would be acknowledged and
never stored. The upsert clause only handles the key conflict; any other violation fails
the whole transaction, so nothing of it is acknowledged.

"Already stored" must mean the same message is stored: a key whose stored row differs
(a forged row, or a bug) is a ``KeyConflict``, never a duplicate. Skipping every
conflict (``DO NOTHING``) let a row forged under the next key make the broker
acknowledge the real message that got that key and store nothing of it. So the clause
is ``DO UPDATE ... WHERE`` the stored row differs, and the update calls a function that
raises: SQLite evaluates it only for a conflicting key with other contents (an identical
retry is skipped as before, and an insert without conflicts pays nothing), and the
statement fails whole. The request holding that key fails alone (the webhook answers
409); the other requests of the same group commit are written again without it.

Durability: WAL journal, ``PRAGMA synchronous`` configurable (FULL by default: the WAL is
fsynced at every COMMIT, so an acknowledged row survives power loss).

Writes take ROWS, plain tuples in ``ROW`` order, not Message objects: the webhook's
``decode_batch`` builds them column-wise. ``committed_at`` is not in them: every row of
one transaction gets the same value, read from the reactor clock once at the start of
the COMMIT, and appended to each row by ``map`` (C-level, no Python loop).

Why multi-row INSERT statements and not ``executemany``: the store's thread shares the
GIL with the reactor, and ``executemany`` releases and retakes it around every row's
``sqlite3_step``. Under load each retake waits for the busy reactor thread, so a
90-row commit took 3-5x its time alone, and that commit is on the path of every PUBACK.
One statement of up to 256 rows steps once. The statements come in a fixed set of
sizes (every size from 1 to 64 rows, then 128 and 256), so they always hit sqlite3's
statement cache (compiling one costs as much as running it) while a batch of up to 64
rows, the common case under light load, is ONE statement and a bigger one at most
three plus one per 256 rows.

Why a batch that fits one statement runs without BEGIN/COMMIT: the connection is in
autocommit mode (``isolation_level=None``; every other write says BEGIN IMMEDIATE
itself), and a single INSERT is then its own transaction: atomic (a failing row
rolls the whole statement back), durable at the same fsync, and it takes the write
lock when it starts, as BEGIN IMMEDIATE would. It saves two statements, i.e. two more
waits for the GIL per commit; measured +8-10% QoS 1 throughput at window 10.
"""
import os
import sqlite3
from itertools import chain, repeat
from operator import add

from sqlite_utils import Database

from mqttd.store.sink import ROW, message_row, row_message  # noqa: F401 (message_row: theirs)
from mqttd.store.pool import OnOwnPool, StoreClosed  # noqa: F401 (StoreClosed: theirs)
from mqttd.store.retained import (already_stored, apply_retained, has_retained,
                                  has_retained_table, retained_rows)
from mqttd.store.schema import MIGRATIONS, SchemaError, immediate, migrate, refuse_too_new

DB_FILENAME = "mqttd.db"
SYNCHRONOUS = ("FULL", "NORMAL", "OFF")

COLUMNS = ROW + ("committed_at",)
_ROW_LENGTH = {len(ROW)}
_MAX_ROWS_PER_INSERT = 256  # 256 x 9 parameters, far below SQLITE_MAX_VARIABLE_NUMBER
_EXACT_UP_TO = 64  # every statement size up to this one exists


_CONFLICT_FUNCTION = "mqttd_key_conflict"
_SAME_CONTENTS = " AND ".join(f"messages.{name} IS excluded.{name}" for name in ROW[1:])


def _insert_statement(rows):
    """One INSERT of ``rows`` rows; a retried key is skipped, nothing else is, and a key
    stored with other contents fails the statement (``_CONFLICT_FUNCTION``)."""
    values = ", ".join([f"({', '.join('?' * len(COLUMNS))})"] * rows)
    return (f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES {values} "
            f"ON CONFLICT(key) DO UPDATE SET key = {_CONFLICT_FUNCTION}(excluded.key) "
            f"WHERE NOT ({_SAME_CONTENTS})")


_INSERTS = {size: _insert_statement(size)
            for size in [*range(1, _EXACT_UP_TO + 1), 2 * _EXACT_UP_TO, _MAX_ROWS_PER_INSERT]}
# Room for every INSERT above plus the few other statements (reads, PRAGMAs): a
# statement evicted from the cache would be compiled again on the hot path.
_CACHED_STATEMENTS = len(_INSERTS) + 32


def _chunks(count):
    """(start, size) pieces of ``count`` rows, each size a key of ``_INSERTS``: 256s,
    then at most one 128, one 64 and one exact rest."""
    start = 0
    for size in (_MAX_ROWS_PER_INSERT, 2 * _EXACT_UP_TO):
        while count - start >= size:
            yield start, size
            start += size
    rest = count - start
    if rest > _EXACT_UP_TO:
        yield start, _EXACT_UP_TO
        start += _EXACT_UP_TO
        rest -= _EXACT_UP_TO
    if rest:
        yield start, rest


def _insert_rows(conn, rows, stamp):
    """One INSERT of ``rows`` (a size in ``_INSERTS``), each + committed_at; how many
    were new."""
    # Each row + (committed_at,), flattened into one parameter tuple in C.
    params = tuple(chain.from_iterable(map(add, rows, stamp)))
    return conn.execute(_INSERTS[len(rows)], params).rowcount


_READ = (
    "SELECT key, client_id, username, topic, payload, qos, retain, received_at, account "
    "FROM messages WHERE client_id = ? ORDER BY received_at DESC LIMIT ?"
)


def create_private(path):
    """Create the database file at ``path``, empty and readable by this user alone
    (0600), unless it exists (an operator's own mode is kept).

    sqlite3 would create it 0644 (0666 less the umask): every local user could read
    every message. SQLite makes the -wal and -shm files with the database file's
    permissions, so they are 0600 too. An empty file is what SQLite takes for a new
    database.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _only_count(outcomes):
    (outcome,) = outcomes
    if isinstance(outcome, KeyConflict):
        raise outcome
    return outcome




class KeyConflict(Exception):
    """A batch's key is already stored with other contents: nothing of the batch is
    stored, and it must not be acknowledged (a forged row, or a bug)."""

    def __init__(self, key):
        super().__init__(f"key {key!r} is already stored with other contents; "
                         f"nothing of this batch is stored")
        self.key = key


class _Conflicting(Exception):
    """Inside ``_insert``: batch ``index`` of the transaction met a KeyConflict."""

    def __init__(self, index, key):
        self.index = index
        self.key = key


class SqliteStore(OnOwnPool):
    """mqttd.db: open/migrate on ``start()``, write batches, read, ``close()``.

    ``reactor`` provides ``callFromThread`` (results come back to the reactor thread) and
    ``seconds()`` (``committed_at``). ``threadpool`` defaults to a fresh one-thread pool
    owned by this store; tests may pass a synchronous double (the SQLite is still real).
    """

    def __init__(self, reactor, path, synchronous="FULL", busy_timeout=5.0, threadpool=None,
                 migrations=MIGRATIONS):
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        super().__init__(reactor, path, threadpool, "mqttd-sqlite")
        self.synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._migrations = migrations
        self._db = None  # touched only on the pool's thread
        self._conflicts = []  # keys _CONFLICT_FUNCTION met (pool's thread too)
        self._keeps_retained = False  # the schema has mqttd.store.retained's table

    @classmethod
    def in_data_dir(cls, reactor, data_dir, **kwargs):
        """The store at DATA_DIR/mqttd.db."""
        return cls(reactor, os.path.join(data_dir, DB_FILENAME), **kwargs)

    # -- life cycle (``start()`` opens the file, enables WAL, migrates: it fails on a
    # too-new schema; ``close()``; both OnOwnPool's) ------------------------------------

    def run(self, fn, *args, **kwargs):
        """Run ``fn(db, *args, **kwargs)`` on the store's thread; Deferred of its result
        (StoreClosed before ``start()`` and after ``close()``).

        ``db`` is the sqlite_utils.Database. Use this for queries other modules need;
        never keep ``db`` or its rows' cursors beyond ``fn``.
        """
        return self._run(self._call, fn, args, kwargs)

    def _call(self, fn, args, kwargs):
        return fn(self._db, *args, **kwargs)

    def _open(self):
        create_private(self.path)
        # Autocommit (isolation_level None): this store begins every transaction itself
        # (BEGIN IMMEDIATE, or a lone INSERT that is its own), so sqlite3 never opens
        # one behind its back.
        conn = sqlite3.connect(self.path, isolation_level=None,
                               cached_statements=_CACHED_STATEMENTS)
        try:
            db = Database(conn, execute_plugins=False)
        except BaseException:
            conn.close()
            raise
        try:
            conn.create_function(_CONFLICT_FUNCTION, 1, self._key_conflict)
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            refuse_too_new(db, self._migrations, name=self.path)  # before WAL changes the file
            db.enable_wal()
            if db.journal_mode != "wal":
                raise SchemaError(f"{self.path}: cannot enable WAL (journal_mode is {db.journal_mode})")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            # A multi-row INSERT inside BEGIN IMMEDIATE keeps a statement journal (to undo
            # that one statement if a row fails its CHECKs). In a file, every commit
            # paid an open, unlink and close of a temporary file (~5% of QoS 1
            # throughput at window 10, measured); in memory it is a few pages of copies.
            # Only that per-statement undo log moves: the WAL still holds every commit.
            db.execute("PRAGMA temp_store = MEMORY")
            limit = db.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            if limit < _MAX_ROWS_PER_INSERT * len(COLUMNS):
                raise SchemaError(f"{self.path}: this SQLite allows {limit} parameters per "
                                  f"statement; mqttd needs SQLite 3.32 or newer")
            migrate(db, self._migrations, name=self.path)
            # A store given an older schema (tests of migrations) has no retained table.
            self._keeps_retained = has_retained_table(conn)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _key_conflict(self, key):
        """SQL function of the upsert clause: called for a key stored with other contents.

        It raises, so the statement fails whole; SQLite reports any exception of a
        function as the same OperationalError, hence the note of which key it was.
        """
        self._conflicts.append(key)
        raise KeyConflict(key)

    def _close(self):
        db, self._db = self._db, None
        if db is not None:
            db.close()

    # -- writes ----------------------------------------------------------------------

    def insert_batch(self, rows):
        """Insert ``rows`` (tuples, ``ROW`` order) in ONE transaction; Deferred of how many
        were new.

        Keys already stored with the same contents are skipped, so a retried batch never
        duplicates a row. If the Deferred fails (a KeyConflict, or anything else),
        nothing of the batch was written.
        """
        d = self.insert_batches([rows])
        d.addCallback(_only_count)
        return d

    def insert_batches(self, batches):
        """Insert several batches of rows in ONE transaction (one COMMIT, one fsync).

        Every row gets the same ``committed_at`` (unix seconds, ``reactor.seconds()`` when
        the transaction starts). Deferred of a list, per batch in order: how many of its
        rows were new, or a KeyConflict for a batch holding a key already stored with
        other contents: that batch alone is not written, the others are committed. This
        is what the group-commit writer uses so each HTTP request learns its own outcome.
        """
        return self.run(self._insert, batches, self._reactor.seconds)

    def _insert(self, db, batches, now):
        batches = [batch if type(batch) is list else list(batch) for batch in batches]
        for batch in batches:
            if batch and set(map(len, batch)) != _ROW_LENGTH:
                # Flattened, a 7-value row beside a 9-value one would bind shifted
                # columns without an error (executemany checked each row).
                raise ValueError(f"rows must hold {len(ROW)} values ({', '.join(ROW)}), "
                                 f"got lengths {sorted(set(map(len, batch)))}")
        conn = db.conn
        if conn.in_transaction:
            # Left open by a failure that could not even roll back: its requests were
            # answered as failed, so nothing of it may commit with this one.
            conn.execute("ROLLBACK")
        stamp = repeat((now(),))
        outcomes = [0] * len(batches)
        todo = [i for i, batch in enumerate(batches) if batch]
        while todo:
            try:
                counts = self._insert_transaction(db, [batches[i] for i in todo], stamp)
            except _Conflicting as conflict:
                # Rolled back whole: write the others again, without the conflicting one
                # (rare: a forged row or a bug; the common path pays nothing for it).
                outcomes[todo.pop(conflict.index)] = KeyConflict(conflict.key)
                continue
            for i, count in zip(todo, counts):
                outcomes[i] = count
            break
        return outcomes

    def _insert_transaction(self, db, batches, stamp):
        """Every one of ``batches`` (none empty) in one transaction; their new-row counts.

        Rows with retain=1 also update ``retained`` in the same transaction
        (``mqttd.store.retained``): durable by the COMMIT that acknowledges them."""
        conn = db.conn
        retained = self._keeps_retained and has_retained(batches)
        if not retained and len(batches) == 1 and len(batches[0]) in _INSERTS:
            # One statement: its own transaction (see the module docstring).
            return [self._insert_batch(conn, 0, batches[0], stamp)]
        with immediate(db):
            if retained:
                rows = retained_rows(batches)
                stored = already_stored(conn, rows)  # a retry: applied when first stored
            counts = [self._insert_batch(conn, i, batch, stamp)
                      for i, batch in enumerate(batches)]
            if retained:
                apply_retained(conn, rows, stored, next(stamp)[0])
            return counts

    def _insert_batch(self, conn, index, batch, stamp):
        try:
            return sum(_insert_rows(conn, batch[start:start + size], stamp)
                       for start, size in _chunks(len(batch)))
        except sqlite3.OperationalError:
            if not self._conflicts:
                raise
            key = self._conflicts.pop()
            self._conflicts.clear()
            raise _Conflicting(index, key) from None

    # -- reads -----------------------------------------------------------------------

    def recent(self, client_id, limit=100):
        """One device's most recent messages, newest first (uses the client index)."""
        return self.run(self._recent, client_id, limit)

    @staticmethod
    def _recent(db, client_id, limit):
        return [row_message(*row) for row in db.execute(_READ, (client_id, limit)).fetchall()]

    def count(self):
        """How many messages are stored."""
        return self.run(lambda db: db.execute("SELECT count(*) FROM messages").fetchone()[0])
