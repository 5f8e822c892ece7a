"""The supervisor in the master: starts every child, restarts one that exits, stops them all.

Modelled on ``twisted.runner.procmon.ProcessMonitor`` (restart delay that doubles while a
child dies young and resets once it has run a while, SIGTERM then SIGKILL on stop), with
what the tree needs and ProcessMonitor cannot do: a child is described by a *callable*
that spawns it, called afresh at each (re)start, so each worker gets fresh socketpair
ends through ``spawnProcess``'s ``childFDs`` and its role and config on stdin. The
supervisor only owns the process protocol: it relays the child's stdout and stderr lines
to the log under the child's name, bounded in bytes, and turns its exit into a restart.
It never spawns by itself, so it needs a clock, not a process reactor.
"""
import signal as signals
from functools import partial

import attrs
from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["LineRelay", "Supervisor", "describe_exit"]

_log = Logger()

# Well under journald's LineMax (48K) and twisted.trial's 64 KiB per log event over AMP:
# longer lines would be split or lost downstream anyway.
MAX_LINE_BYTES = 16 * 1024


class LineRelay:
    """Cuts a byte stream into lines for ``emit(line, cut)``, holding at most ``max_bytes``.

    A child that writes without a newline must not make the master buffer without bound:
    a line longer than ``max_bytes`` is emitted cut at ``max_bytes`` (``cut=True``) and the
    rest of it, up to the next newline, is dropped.
    """

    def __init__(self, emit, max_bytes=MAX_LINE_BYTES):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self._emit = emit
        self._max = max_bytes
        self._partial = bytearray()
        self._dropping = False  # inside a line already emitted cut

    @property
    def buffered(self):
        """Bytes held for a line not finished yet (never more than ``max_bytes``)."""
        return len(self._partial)

    def feed(self, data):
        *lines, rest = data.split(b"\n")
        for piece in lines:
            self._add(piece)
            if self._dropping:
                self._dropping = False  # the newline ends the line emitted cut
            else:
                self._send(cut=False)
        self._add(rest)

    def flush(self):
        """The stream ended: emit a last line that had no newline."""
        if self._partial:
            self._send(cut=False)
        self._dropping = False

    def _add(self, piece):
        if self._dropping:
            return
        room = self._max - len(self._partial)
        if len(piece) > room:
            self._partial += piece[:room]
            self._send(cut=True)
            self._dropping = True
        else:
            self._partial += piece

    def _send(self, cut):
        line = bytes(self._partial)
        self._partial.clear()
        self._emit(line, cut)


def _relay_line(child, stream, level, max_bytes, line, cut):
    text = line.rstrip(b"\r").decode("utf-8", "backslashreplace")
    suffix = " [cut at {max_line_bytes} bytes]" if cut else ""
    _log.emit(level, "[{child}] {line}" + suffix, child=child, stream=stream, line=text,
              cut=cut, max_line_bytes=max_bytes)


def describe_exit(reason):
    """How a child ended, for the log: ``exit status 3``, ``killed by SIGKILL``, or the
    error that kept it from starting."""
    value = reason.value
    if isinstance(value, (error.ProcessDone, error.ProcessTerminated)):
        if value.signal is not None:
            try:
                return f"killed by {signals.Signals(value.signal).name}"
            except ValueError:
                return f"killed by signal {value.signal}"
        return f"exit status {value.exitCode}"
    return f"could not start: {value!r}"


class _ChildProtocol(protocol.ProcessProtocol):
    """One run of one child: its stdout lines go to the log at info, its stderr lines
    (Python's tracebacks) at warn, and its exit to ``exited(self, reason)``."""

    def __init__(self, name, max_line_bytes, exited):
        self._exited = exited
        self._relays = {
            fd: LineRelay(partial(_relay_line, name, stream, level, max_line_bytes),
                          max_line_bytes)
            for fd, stream, level in ((1, "stdout", LogLevel.info),
                                      (2, "stderr", LogLevel.warn))}

    def childDataReceived(self, childFD, data):
        relay = self._relays.get(childFD)
        if relay is not None:  # other fds the caller mapped are its own business
            relay.feed(data)

    def processExited(self, reason):
        # Exit, not processEnded: a grandchild holding the pipes open must not keep the
        # supervisor from restarting the child or from finishing a stop.
        self._exited(self, reason)

    def processEnded(self, reason):
        for relay in self._relays.values():
            relay.flush()


@attrs.define(eq=False)
class _Child:
    """What the supervisor knows of one named child across its runs."""

    name: str
    start: object
    on_start: object
    on_exit: object
    protocol: object = None  # the current run's _ChildProtocol, None while not running
    transport: object = None
    started_at: float = 0.0
    runs: int = 0
    deaths_in_a_row: int = 0  # since the last run that lasted stable_after
    restart_call: object = None
    kill_call: object = None
    stopped: object = None  # Deferred fired on exit while the supervisor stops


class Supervisor(service.Service):
    """Runs named children and restarts each one that exits, with backoff.

    ``add(name, start, on_start=None, on_exit=None)``: ``start(process_protocol)`` must
    spawn the child with that protocol (``reactor.spawnProcess(process_protocol, ...)``,
    with its ``childFDs``; it may write the child's stdin and close it) and return the
    ``IProcessTransport``; it is called at every start. ``on_start(name, transport)``
    runs after each successful start, ``on_exit(name, reason)`` after each exit (also
    while stopping), ``reason`` being the ``Failure`` from ``processExited``.

    The restart delay is ``min_restart_delay`` after a run that lasted ``stable_after``
    seconds, and doubles with each further death of a child that had not run
    ``stable_after`` seconds, up to ``max_restart_delay``. A ``start`` that raises
    counts as a death at once. Every death is logged with the child's name, how it
    ended, how many times in a row, and the delay before the next start.
    """

    def __init__(self, clock, metrics, *, min_restart_delay=1.0, max_restart_delay=60.0,
                 stable_after=10.0, kill_timeout=5.0, max_line_bytes=MAX_LINE_BYTES):
        if not 0 < min_restart_delay <= max_restart_delay:
            raise ValueError("restart delays need 0 < min_restart_delay <= max_restart_delay,"
                             f" not {min_restart_delay} and {max_restart_delay}")
        if stable_after < 0 or kill_timeout < 0:
            raise ValueError("stable_after and kill_timeout cannot be negative")
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes}")
        self._clock = clock
        self._metrics = metrics
        self._min_delay = min_restart_delay
        self._max_delay = max_restart_delay
        self._stable_after = stable_after
        self._kill_timeout = kill_timeout
        self._max_line_bytes = max_line_bytes
        self._children = {}

    def add(self, name, start, on_start=None, on_exit=None):
        """Supervise a new child; it starts at once if the supervisor is running."""
        if name in self._children:
            raise KeyError(f"a child named {name!r} is supervised already")
        child = self._children[name] = _Child(name, start, on_start, on_exit)
        if self.running:
            self._start(child)

    def pids(self):
        """``{name: pid}`` of the children running now."""
        return {name: child.transport.pid for name, child in self._children.items()
                if child.transport is not None}

    def signal_all(self, signal):
        """Send ``signal`` (a name such as ``"HUP"``, or a number) to every running child."""
        for child in self._children.values():
            self._signal(child, signal)

    def startService(self):
        super().startService()
        for child in self._children.values():
            if child.protocol is None and child.restart_call is None:
                self._start(child)

    def stopService(self):
        """SIGTERM to every child, SIGKILL to those alive ``kill_timeout`` later; no
        restart. The Deferred fires once every child has exited."""
        super().stopService()
        waiting = []
        for child in self._children.values():
            if child.restart_call is not None:
                child.restart_call.cancel()
                child.restart_call = None
            if child.protocol is not None:
                child.stopped = defer.Deferred()
                waiting.append(child.stopped)
                self._signal(child, "TERM")
                child.kill_call = self._clock.callLater(self._kill_timeout, self._kill, child)
        return defer.gatherResults(waiting).addCallback(lambda _: None)

    # -- one run of one child -----------------------------------------------------------

    def _start(self, child):
        child.restart_call = None
        if child.runs:
            self._metrics.tree_restarts[child.name] += 1
        child.runs += 1
        child.protocol = _ChildProtocol(child.name, self._max_line_bytes, self._exited)
        child.started_at = self._clock.seconds()
        try:
            child.transport = child.start(child.protocol)
        except Exception:
            failure = Failure()
            _log.failure("could not start {child}", failure, child=child.name)
            child.protocol = None
            self._died(child, failure)
            return
        self._hook(child.on_start, child, child.transport)

    def _exited(self, protocol, reason):
        child = next((c for c in self._children.values() if c.protocol is protocol), None)
        if child is None:
            return
        child.protocol = child.transport = None
        if child.kill_call is not None:
            if child.kill_call.active():
                child.kill_call.cancel()
            child.kill_call = None
        self._hook(child.on_exit, child, reason)
        if child.stopped is not None:
            stopped, child.stopped = child.stopped, None
            _log.info("{child} stopped: {status}", child=child.name,
                      status=describe_exit(reason))
            stopped.callback(None)
        if self.running:  # not stopping, or started again while this child stopped
            self._died(child, reason)

    def _died(self, child, reason):
        ran = self._clock.seconds() - child.started_at
        if ran >= self._stable_after:
            child.deaths_in_a_row = 0
        child.deaths_in_a_row += 1
        delay = min(self._min_delay * 2.0 ** min(child.deaths_in_a_row - 1, 64),
                    self._max_delay)
        _log.warn("{child} ended ({status}) after {ran:.1f}s, {in_a_row} time(s) in a row;"
                  " starting it again in {delay:.1f}s", child=child.name,
                  status=describe_exit(reason), ran=ran, in_a_row=child.deaths_in_a_row,
                  delay=delay)
        child.restart_call = self._clock.callLater(delay, self._start, child)

    def _kill(self, child):
        child.kill_call = None
        _log.warn("{child} still running {timeout}s after SIGTERM: SIGKILL",
                  child=child.name, timeout=self._kill_timeout)
        self._signal(child, "KILL")

    @staticmethod
    def _signal(child, signal):
        if child.transport is not None:
            try:
                child.transport.signalProcess(signal)
            except error.ProcessExitedAlready:
                pass  # its exit is on the way

    @staticmethod
    def _hook(hook, child, argument):
        if hook is None:
            return
        try:
            hook(child.name, argument)
        except Exception:
            _log.failure("the hook {hook!r} of {child} failed", hook=hook, child=child.name)
