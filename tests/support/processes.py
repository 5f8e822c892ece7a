"""A fake process reactor on ``task.Clock`` for the supervisor's tests (after
``twisted.runner.test.test_procmon``'s DummyProcessReactor).

``FakeProcessReactor.spawnProcess`` records a ``FakeProcess`` with everything it was
given (argv, env, childFDs) and connects the protocol as the real reactor does. A test
then plays the child: ``output`` writes to its stdout/stderr, ``exit`` and
``kill_by`` end it (``processExited`` then ``processEnded``, as the real reactor calls
them). Signals are recorded; SIGKILL ends the process on the next tick, as the kernel
would, while any other signal only ends it if the test says so (``exit_on``).
"""
import signal as signals

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IProcessTransport)
class FakeProcess:
    def __init__(self, reactor, pid, protocol, executable, args, env, child_fds):
        self._reactor = reactor
        self.pid = pid
        self.protocol = protocol
        self.executable = executable
        self.args = list(args)
        self.env = env
        self.child_fds = child_fds
        self.stdin = bytearray()
        self.stdin_closed = False
        self.signals = []
        self.exit_on = {}  # signal name -> how it ends the process: ("signal", n) or ("exit", n)

    @property
    def alive(self):
        return self.pid is not None

    # -- IProcessTransport, the parts the supervisor and its callers use --------------

    def write(self, data):
        self.stdin += data

    def writeToChild(self, fd, data):
        if fd == 0:
            self.write(data)

    def writeSequence(self, data):
        for piece in data:
            self.write(piece)

    def closeStdin(self):
        self.stdin_closed = True

    def closeChildFD(self, fd):
        if fd == 0:
            self.closeStdin()

    def signalProcess(self, signal):
        if not self.alive:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        how = {"KILL": ("signal", signals.SIGKILL)}.get(signal) or self.exit_on.get(signal)
        if how is not None:
            kind, number = how
            end = self.kill_by if kind == "signal" else self.exit
            self._reactor.callLater(0, end, number)

    # -- what the child does -----------------------------------------------------------

    def output(self, fd, data):
        self.protocol.childDataReceived(fd, data)

    def exit(self, code=0):
        self._end(ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code))

    def kill_by(self, signal):
        self._end(ProcessTerminated(signal=signal))

    def _end(self, exception):
        if not self.alive:
            return  # a second SIGKILL, say: a process ends once
        self.pid = None
        self.protocol.processExited(Failure(exception))
        self.protocol.processEnded(Failure(exception))


class FakeProcessReactor(Clock):
    """``spawnProcess`` and time; ``spawn_error`` makes the next spawns raise it.

    ``adoptStreamConnection`` (how the master opens a child's channel) builds the
    protocol and connects it to a StringTransport, kept in ``adopted``."""

    def __init__(self):
        super().__init__()
        self.adopted = []  # (protocol, StringTransport) of each adopted connection
        self.processes = []
        self.spawn_error = None
        self._next_pid = 1000

    def spawnProcess(self, processProtocol, executable, args=(), env={}, path=None,
                     uid=None, gid=None, usePTY=False, childFDs=None):
        if self.spawn_error is not None:
            raise self.spawn_error
        self._next_pid += 1
        process = FakeProcess(self, self._next_pid, processProtocol, executable, args, env,
                              childFDs)
        self.processes.append(process)
        processProtocol.makeConnection(process)
        return process

    def adoptStreamConnection(self, fileDescriptor, addressFamily, factory):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.adopted.append((protocol, transport))

    @property
    def alive(self):
        return [process for process in self.processes if process.alive]
