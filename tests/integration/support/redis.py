"""A private redis-server for a test (``start_redis``): on an ephemeral loopback port,
nothing saved (``--save "" --appendonly no``), never the host's own. It can be killed
mid-test (``kill``) and brought back empty on the same port (``start`` again), as an
outage of Redis looks to the appliances pointed at it.
"""
import os
import socket
import subprocess
import time

from tests.integration.support.common import HOST, STOP_TIMEOUT, free_port

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 10.0


class RedisError(AssertionError):
    """redis-server did not start or answer."""


class RedisServer:
    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.port = port
        self.process = None
        self._log = None
        self._runs = 0

    @property
    def url(self):
        return f"redis://{HOST}:{self.port}/0"

    def start(self, attempts=3):
        """Start it: on a fresh port the first time, on the same one after ``kill``
        (the port the appliances know)."""
        if self.port is not None:
            problem = self._start_once()
            if problem:
                raise RedisError(f"redis-server did not start again on {self.port}: {problem}")
            return self
        for _ in range(attempts):
            self.port = free_port()  # taken meanwhile: it says so and exits, tried again
            problem = self._start_once()
            if not problem:
                return self
        raise RedisError(f"redis-server did not start: {problem}")

    def _start_once(self):
        self._runs += 1
        path = os.path.join(self.workdir, f"redis-{self._runs}.log")
        self._log = open(path, "wb")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close()
                with open(path, errors="replace") as f:
                    return f.read().strip()[-500:] or "exited"
            if self.command("PING") == "+PONG":
                return ""
            time.sleep(0.05)
        self.kill()
        return f"no PONG within {START_TIMEOUT} s"

    def command(self, *args):
        """One command's first reply line (e.g. "+PONG", ":3", "$-1"), or None if
        nothing answers."""
        body = b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        try:
            with socket.create_connection((HOST, self.port), timeout=2.0) as s:
                s.sendall(b"*%d\r\n" % len(args) + body)
                return s.makefile("rb").readline().decode().rstrip("\r\n")
        except OSError:
            return None

    def kill(self):
        """SIGKILL: an outage, everything in it lost."""
        if self.process is not None:
            self.process.kill()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        self._close()

    def _close(self):
        if self._log is not None:
            self._log.close()
            self._log = None


def start_redis(testcase):
    """A private redis-server for ``testcase``, killed at cleanup."""
    server = RedisServer(os.path.abspath(testcase.mktemp()))
    os.makedirs(server.workdir, exist_ok=True)
    testcase.addCleanup(server.kill)
    return server.start()
