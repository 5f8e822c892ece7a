"""The broker under test as a real process: ``BrokerProcess`` runs ``twistd -n mqttd``
(or, with ``MQTTD_TEST_BROKER=mosquitto``, Debian's mosquitto as a reference) on an
ephemeral loopback port; ``run_twistd_mqttd`` runs it to completion for start-up
failures; ``requires_mqttd`` / ``not_on_mosquitto`` mark what the reference differs in.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

from mqttd.cores import usable_cores
from tests.integration.support.common import HOST, STDBUF, STOP_TIMEOUT, free_port

#: Which broker the integration tests run against: "mqttd" (default) or "mosquitto".
BROKER_KIND = os.environ.get("MQTTD_TEST_BROKER", "mqttd").strip().lower() or "mqttd"

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"

START_TIMEOUT = 30.0  # a tree on a loaded 2-core CI machine took over 15 s to have its workers up

#: The smallest useful config: anonymous clients allowed.
ANONYMOUS = "[auth]\nallow_anonymous = true\n"


def twistd_path():
    """The twistd of the interpreter running the tests (the virtualenv's)."""
    return os.path.join(os.path.dirname(sys.executable), "twistd")


class BrokerError(AssertionError):
    """The broker did not start, or died, or misbehaved at stop."""


class BrokerProcess:
    """One broker process on an ephemeral 127.0.0.1 port.

    ``config`` is mqttd's TOML text. For mosquitto, the keys that have a mosquitto
    equivalent are translated (allow_anonymous, users, max_queued_messages,
    max_inflight); the rest are ignored. ``wrap`` is a command prefix the broker runs
    under (e.g. ``strace -f -o FILE``); it shares the broker's process group.
    """

    def __init__(self, config=ANONYMOUS, workdir=None, kind=None, wrap=()):
        self.config = config
        self.wrap = tuple(wrap)
        self.kind = kind or BROKER_KIND
        if self.kind not in ("mqttd", "mosquitto"):
            raise ValueError(f"MQTTD_TEST_BROKER must be mqttd or mosquitto, got {self.kind!r}")
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="mqttd-it-"))
        os.makedirs(self.workdir, exist_ok=True)
        self.port = None
        self.process = None
        self.output_path = None
        self._output_file = None
        self._attempt = 0

    # -- output

    def output(self):
        """Everything the broker wrote to stdout/stderr so far."""
        if self.output_path is None:
            return ""
        try:
            with open(self.output_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, lines=40):
        text = self.output().splitlines()[-lines:]
        return f"--- {self.kind} output (last {len(text)} lines, {self.output_path}) ---\n" + "\n".join(text)

    # -- lifecycle

    def command(self, port):
        if self.kind == "mqttd":
            config_path = os.path.join(self.workdir, "mqttd.toml")
            with open(config_path, "w") as f:
                f.write(self.config)
            # /metrics on a port of its own (tests run side by side), unless the test
            # configures it: metrics_url says where.
            http = [] if "http_listen" in self.config else [
                "--http-listen", f"tcp:0:interface={HOST}"]
            return [
                twistd_path(), "-n", "--pidfile=", "mqttd",
                "--config", config_path,
                "--listen", f"tcp:{port}:interface={HOST}",
                "--data-dir", os.path.join(self.workdir, "data"),
                *http,
            ]
        config_path = os.path.join(self.workdir, "mosquitto.conf")
        with open(config_path, "w") as f:
            f.write(self._mosquitto_conf(port))
        # Line-buffered, so the log is readable while mosquitto runs (failure messages).
        return [STDBUF, "-oL", MOSQUITTO, "-c", config_path]

    def _mosquitto_conf(self, port):
        doc = tomllib.loads(self.config)
        auth = doc.get("auth", {})
        broker = doc.get("broker", {})
        lines = [
            f"listener {port} {HOST}",
            f"allow_anonymous {'true' if auth.get('allow_anonymous', False) else 'false'}",
            "persistence false",
            # As root, mosquitto would switch to user mosquitto, who cannot read our temp dir.
            *(["user root"] if os.geteuid() == 0 else []),
            "log_dest stdout",
            "log_type all",
        ]
        users = auth.get("users", [])
        if users:
            path = os.path.join(self.workdir, "passwd")
            open(path, "w").close()
            for user in users:
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", path, user["username"], user["password"]],
                    check=True, timeout=10, capture_output=True,
                )
            lines.append(f"password_file {path}")
        if "max_queued_messages" in broker:
            lines.append(f"max_queued_messages {broker['max_queued_messages']}")
        if "max_inflight" in broker:
            lines.append(f"max_inflight_messages {broker['max_inflight']}")
        if "max_packet_size" in broker:
            lines.append(f"max_packet_size {broker['max_packet_size']}")
        return "\n".join(lines) + "\n"

    def start(self, attempts=3, timeout=START_TIMEOUT):
        """Start the broker and wait until it listens; ``port`` is then its MQTT port.

        mqttd binds port 0 and its log line "mqttd listening on ... (HOST:PORT)" says
        which port it got: no other process can hold that port. A port picked free
        beforehand could be taken meanwhile, even by the ephemeral ingest port of a
        broker started by a parallel test, and "accepts connections" would then see
        that other socket. mosquitto cannot report a port 0, so it gets a picked one
        and a retry on a fresh port if it dies complaining the address is taken.
        """
        last = None
        for _ in range(attempts):
            try:
                self._start_once(timeout)
                return self
            except _PortCollision as e:
                last = e
                continue
        raise BrokerError(f"could not start {self.kind} after {attempts} port collisions: {last}")

    def _start_once(self, timeout):
        self._attempt += 1
        port = 0 if self.kind == "mqttd" else free_port()
        self.output_path = os.path.join(self.workdir, f"{self.kind}-{self._attempt}.log")
        self._output_file = open(self.output_path, "wb")
        self.process = subprocess.Popen(
            [*self.wrap, *self.command(port)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._output_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches any children
        )
        deadline = time.monotonic() + timeout
        while True:
            rc = self.process.poll()
            if rc is not None:
                self.process = None  # reported here; stop() has nothing left to say
                self._close_output()
                out = self.output()
                if "Address already in use" in out or "CannotListenError" in out:
                    raise _PortCollision(out.strip().splitlines()[-1:])
                raise BrokerError(
                    f"{self.kind} exited with status {rc} before listening on port {port}\n{self.tail()}"
                )
            if self.kind == "mqttd":
                out = self.output()
                bound = _mqttd_listening_port(out)
                if bound is not None and (_TREE_MASTER not in out or _TREE_STARTED.search(out)):
                    self.port = bound
                    return
            elif _port_open(port):
                # Someone else may hold the port (a collision): make sure our process lives.
                time.sleep(0.05)
                if self.process.poll() is None:
                    self.port = port
                    return
                continue
            if time.monotonic() >= deadline:
                self._kill()
                self.process = None
                raise BrokerError(
                    f"{self.kind} did not accept connections on port {port} within {timeout}s\n{self.tail()}"
                )
            time.sleep(0.05)

    @property
    def metrics_url(self):
        """``http://HOST:PORT/metrics`` of mqttd's manage.http_listen, from its log (None
        while it has said nothing of it); /healthz is beside it."""
        match = _METRICS.search(self.output())
        return match.group(1) if match else None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    @property
    def workers(self):
        """mqttd's server.workers: as the config sets it, else the default, this host's
        usable cores (0: one process; mosquitto counts as one process)."""
        if self.kind != "mqttd":
            return 0
        return tomllib.loads(self.config).get("server", {}).get("workers", usable_cores())

    @property
    def data_dir(self):
        """mqttd's --data-dir (its database is ``db_path``)."""
        return os.path.join(self.workdir, "data")

    @property
    def db_path(self):
        return os.path.join(self.data_dir, "mqttd.db")

    def sigkill(self):
        """SIGKILL the broker's whole process group now (a crash, as the test intends).

        Returns the exit status; ``stop()`` afterwards has nothing left to do, and the
        broker may be ``start()``-ed again on the same work and data directories.
        """
        if self.process is None:
            raise BrokerError(f"{self.kind} is not running")
        died_early = self.process.poll()
        if died_early is not None:
            self.process = None
            self._close_output()
            raise BrokerError(f"{self.kind} had died before the SIGKILL with status {died_early}\n{self.tail()}")
        self._kill()
        rc = self.process.poll()
        self.process = None
        return rc

    def terminate_main(self, timeout=STOP_TIMEOUT):
        """SIGTERM to the main process alone (systemd's KillMode=mixed) and wait for the
        whole tree to exit; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            rc = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise BrokerError(f"{self.kind} ignored SIGTERM for {timeout}s; killed\n{self.tail()}")
        self.process = None
        self._close_output()
        return rc

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after ``timeout``; raises if the broker had died on its own.

        For mqttd, also raises if its log shows an unhandled error or a traceback:
        bad input is supposed to close one connection with a clear reason, not that.
        """
        if self.process is None:
            return
        died_early = self.process.poll()
        if died_early is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self._close_output()
                raise BrokerError(f"{self.kind} ignored SIGTERM for {timeout}s; killed\n{self.tail()}")
        # Children (workers) of mqttd share the process group: make sure none survive.
        self._signal(signal.SIGKILL)
        self._close_output()
        if died_early is not None:
            raise BrokerError(f"{self.kind} died during the test with status {died_early}\n{self.tail()}")
        if self.kind == "mqttd":
            out = self.output()
            for marker in ("Unhandled Error", "Traceback (most recent call last)"):
                if marker in out:
                    raise BrokerError(f"mqttd logged {marker!r} during the test\n{self.tail(80)}")

    def _signal(self, sig):
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill(self):
        self._signal(signal.SIGKILL)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._close_output()

    def _close_output(self):
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None


class _PortCollision(Exception):
    pass


_LISTENING = re.compile(r"mqttd listening on tcp:0:\S* \([^)]*:(\d+)\)")
# The process tree (the default, server.workers >= 1): its master listens before its
# workers are up, and holds CONNECTs meanwhile, up to broker.idle_timeout (then a client
# whose worker is not up gets CONNACK 3). A test's own timeouts start once the tree says
# every worker is up, as an operator would wait for it.
_TREE_MASTER = "[mqttd.tree.master#"
_TREE_STARTED = re.compile(r"mqttd tree ready:")


_METRICS = re.compile(r"metrics and health listening on (http://\S+/metrics)")


def _mqttd_listening_port(output):
    """The MQTT port mqttd reports in its log once its tcp:0 listener is bound, or None."""
    match = _LISTENING.search(output)
    return int(match.group(1)) if match else None


def _port_open(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_broker(testcase, config=ANONYMOUS, kind=None):
    """Start a broker for ``testcase`` (work dir under trial's temp dir), stopped at cleanup."""
    workdir = os.path.abspath(testcase.mktemp())
    broker = BrokerProcess(config, workdir=workdir, kind=kind)
    testcase.addCleanup(broker.stop)
    broker.start()
    return broker


def run_twistd_mqttd(args, cwd, timeout=15.0, http_listen=f"tcp:0:interface={HOST}"):
    """Run ``twistd -n mqttd ARGS`` to completion (for start-up failures); returns
    CompletedProcess. ``http_listen`` (None: the config's own) keeps /metrics off the
    default port, which tests running side by side would share."""
    http = [] if http_listen is None else ["--http-listen", http_listen]
    return subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "mqttd", *http, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        text=True,
    )


def requires_mqttd(reason="an mqttd-only feature"):
    """Skip a test (or class) when running against the reference broker."""
    def decorate(obj):
        if BROKER_KIND != "mqttd":
            obj.skip = f"{reason}; not run against {BROKER_KIND}"
        return obj
    return decorate


def not_on_mosquitto(reason):
    """Skip where the reference broker is known to behave differently (``reason`` says how)."""
    def decorate(obj):
        if BROKER_KIND == "mosquitto":
            obj.skip = f"mosquitto differs: {reason}"
        return obj
    return decorate
