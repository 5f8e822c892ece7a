"""The trace's JSON-lines file (``manage.trace_file``): several processes append to one.

Every process of the tree (the master, each worker) opens the file itself with
``O_APPEND`` and writes whole lines only: a write(2) of an ``O_APPEND`` file is one
seek-to-end-and-write under the inode's lock, so the lines of several processes
interleave, never their bytes. The other way, every event travelling to the master to
be written there, would spend the master's CPU (the tree's scarcest: it accepts, reads
every CONNECT and relays TLS) and its channels' bandwidth on what each process can
write itself; benchmarks/README.md ("The trace") has the measurements.

Lines wait for the end of the reactor's turn and go in one write (at most
``FLUSH_BYTES`` and one line more at a time), so a burst of events costs one system
call, not one each. logrotate's ``copytruncate`` (debian/mqttd.logrotate) fits this:
the file is never reopened, and after the truncation every ``O_APPEND`` write lands at
the new end (a writer without ``O_APPEND`` would leave a hole the size of the old file).
Lines written between logrotate's copy and its truncation are lost; that is
copytruncate's known window, a few milliseconds once a day.

A write that fails (disk full) drops its lines: counted in ``trace_write_errors``, logged
once until a write succeeds again. It never stops the broker. The write is on the
reactor thread, as twisted.logger's own file writes are: an append to the page cache.
"""
import os

from twisted.logger import Logger

from mqttd.errors import ConfigError

__all__ = ["FLUSH_BYTES", "TraceFile", "open_trace_file"]

log = Logger()

FLUSH_BYTES = 65536
"""Bytes of lines after which they are written at once, not at the end of the turn."""


def open_trace_file(path, key="manage.trace_file"):
    """The fd of ``path`` opened for appending (created 0640); ConfigError naming
    ``key`` if it cannot be."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise ConfigError(f"{key}: cannot open {path!r} for appending: {e.strerror}") from None


class TraceFile:
    """An ILogObserver of the trace's events: writes each one's ``trace_line``.

    ``fd`` is open for appending (``open_trace_file``); ``clock`` schedules the flush at
    the end of the turn; ``metrics`` gets ``trace_write_errors``."""

    def __init__(self, clock, fd, metrics, path=""):
        self._clock = clock
        self._fd = fd
        self._metrics = metrics
        self._path = path
        self._lines = []
        self._size = 0
        self._flush_call = None
        self._failing = False

    def __call__(self, event):
        line = event.get("trace_line")
        if line is None or self._fd is None:
            return
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self.flush)

    def flush(self):
        """Write what waits, now (one write of whole lines)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._lines or self._fd is None:
            return
        data = "".join(self._lines).encode("utf-8")
        count = len(self._lines)
        self._lines = []
        self._size = 0
        try:
            view = memoryview(data)
            while view:  # a short write (a signal, the disk filling up): the rest after it
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self._metrics.trace_write_errors += count
            if not self._failing:
                self._failing = True
                log.warn("trace: writing {path} failed ({error}); its lines are dropped "
                         "until a write succeeds", path=self._path, error=e.strerror)
            return
        if self._failing:
            self._failing = False
            log.info("trace: writing {path} again", path=self._path)

    def close(self):
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
