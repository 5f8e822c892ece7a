"""Harness for integration tests: a real broker process and real MQTT clients.

Everything here blocks, and every wait is bounded: a broken broker makes a test fail
with the broker's output in the message, never hang.

- ``BrokerProcess`` runs ``twistd -n mqttd`` (or, with ``MQTTD_TEST_BROKER=mosquitto``,
  Debian's mosquitto as a reference) on an ephemeral loopback port.
- ``PahoClient`` wraps a paho-mqtt 2.x client (MQTT 3.1.1, network loop in a thread)
  and collects what it receives in thread-safe queues.
- ``RawClient`` speaks MQTT over a plain socket, for what a well-behaved client
  library will not do (never send CONNECT, send garbage, die without DISCONNECT).
- ``mosquitto_pub`` / ``MosquittoSub`` run Debian's command-line clients.
"""
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from twisted.trial.unittest import SynchronousTestCase

HOST = "127.0.0.1"

#: Which broker the integration tests run against: "mqttd" (default) or "mosquitto".
BROKER_KIND = os.environ.get("MQTTD_TEST_BROKER", "mqttd").strip().lower() or "mqttd"

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
STDBUF = "/usr/bin/stdbuf"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 5.0

#: The smallest useful config: anonymous clients allowed.
ANONYMOUS = "[auth]\nallow_anonymous = true\n"


def twistd_path():
    """The twistd of the interpreter running the tests (the virtualenv's)."""
    return os.path.join(os.path.dirname(sys.executable), "twistd")


def free_port():
    """A port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, interval=0.01, message="condition", context=None):
    """Poll ``predicate`` until it returns a true value (returned); AssertionError on timeout.

    ``context`` is an optional callable whose text is appended to the failure message
    (e.g. the broker's output).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------- brokers


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
            return [
                twistd_path(), "-n", "--pidfile=", "mqttd",
                "--config", config_path,
                "--listen", f"tcp:{port}:interface={HOST}",
                "--data-dir", os.path.join(self.workdir, "data"),
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
                bound = _mqttd_listening_port(self.output())
                if bound is not None:
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

    def alive(self):
        return self.process is not None and self.process.poll() is None

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


def run_twistd_mqttd(args, cwd, timeout=15.0):
    """Run ``twistd -n mqttd ARGS`` to completion (for start-up failures); returns CompletedProcess."""
    return subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "mqttd", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        text=True,
    )


# --------------------------------------------------------------------------- paho clients


class Message:
    """One PUBLISH as a subscriber received it."""

    __slots__ = ("topic", "payload", "qos", "retain", "dup")

    def __init__(self, topic, payload, qos, retain, dup=False):
        self.topic, self.payload, self.qos, self.retain, self.dup = topic, payload, qos, retain, dup

    def __repr__(self):
        return (f"Message({self.topic!r}, {self.payload[:40]!r}{'...' if len(self.payload) > 40 else ''}, "
                f"qos={self.qos}, retain={self.retain})")


class PahoClient:
    """A paho-mqtt 2.x client (MQTT 3.1.1) with its network loop in a thread.

    It never reconnects on its own (a test wants to see disconnections). Received
    messages go to ``self.messages`` (a queue of ``Message``).
    """

    def __init__(self, port, client_id="", clean_session=True, username=None, password=None,
                 will=None, keepalive=60, context=None):
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.context = context
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self._suback = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = self._on_disconnect
        self._started = False

    def _ctx(self):
        return self.context() if self.context is not None else ""

    # callbacks run in paho's thread

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connacks.put((reason_code, flags.session_present))

    def _on_message(self, client, userdata, msg):
        self.messages.put(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup)))

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._lock:
            self._suback[mid] = [rc.value for rc in reason_code_list]

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._lock:
            self._suback[("unsub", mid)] = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()

    # API used by tests

    def connect(self, timeout=DEFAULT_TIMEOUT, expect_success=True):
        """Connect and wait for CONNACK; returns (reason_code, session_present)."""
        self.client.connect(HOST, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._started = True
        try:
            reason_code, session_present = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id!r}: no CONNACK within {timeout}s\n{self._ctx()}") from None
        if expect_success and reason_code.is_failure:
            raise AssertionError(f"{self.client_id!r}: connection refused: {reason_code}\n{self._ctx()}")
        return reason_code, session_present

    def subscribe(self, topic, qos=0, timeout=DEFAULT_TIMEOUT):
        """Subscribe and wait for SUBACK; returns the granted QoS (or 0x80)."""
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"subscribe({topic!r}) failed locally: {mqtt.error_string(result)}")
        granted = wait_for(lambda: self._suback.get(mid), timeout, message=f"SUBACK for {topic!r}",
                           context=self.context)
        return granted[0]

    def unsubscribe(self, topic, timeout=DEFAULT_TIMEOUT):
        """Unsubscribe and wait for UNSUBACK."""
        result, mid = self.client.unsubscribe(topic)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"unsubscribe({topic!r}) failed locally: {mqtt.error_string(result)}")
        wait_for(lambda: self._suback.get(("unsub", mid)), timeout, message=f"UNSUBACK for {topic!r}",
                 context=self.context)

    def publish(self, topic, payload, qos=0, retain=False, timeout=DEFAULT_TIMEOUT):
        """Publish and wait until the flow completes (sent; PUBACK; PUBCOMP)."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(
                f"publish to {topic!r} qos {qos} not acknowledged within {timeout}s\n{self._ctx()}")
        return info

    def get_message(self, timeout=DEFAULT_TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id!r}: no message within {timeout}s\n{self._ctx()}") from None

    def get_messages(self, count, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id!r}: got {len(got)} of {count} messages within {timeout}s: "
                    f"{got[:5]}...\n{self._ctx()}") from None
        return got

    def no_message(self, timeout=0.3):
        """True if nothing arrives within ``timeout`` (otherwise AssertionError naming it)."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"{self.client_id!r}: unexpected message {message!r}")

    def wait_disconnected(self, timeout=DEFAULT_TIMEOUT):
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id!r} was not disconnected within {timeout}s\n{self._ctx()}")

    def disconnect(self, timeout=DEFAULT_TIMEOUT):
        """Clean DISCONNECT, then stop the network thread."""
        self.client.disconnect()
        self.disconnected.wait(timeout)
        self._stop_loop()

    def kill_socket(self):
        """Drop the TCP connection without DISCONNECT (FIN, no MQTT goodbye)."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.disconnected.wait(DEFAULT_TIMEOUT)
        self._stop_loop()

    def _stop_loop(self):
        if self._started:
            self._started = False
            self.client.loop_stop()

    def close(self):
        """Cleanup: disconnect if still connected; never blocks for long."""
        try:
            if self._started and not self.disconnected.is_set():
                self.client.disconnect()
                self.disconnected.wait(2.0)
            self._stop_loop()
        finally:
            sock = self.client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


# --------------------------------------------------------------------------- raw MQTT


class PacketType:
    CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
    SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def encode_remaining_length(n):
    out = bytearray()
    while True:
        digit = n % 128
        n //= 128
        if n:
            digit |= 0x80
        out.append(digit)
        if not n:
            return bytes(out)


def _utf8(s):
    data = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def packet(first_byte, body=b""):
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


def connect_packet(client_id="", keepalive=60, clean_session=True, will=None, username=None,
                   password=None, protocol_name="MQTT", level=4):
    """CONNECT bytes; ``will`` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean_session else 0
    payload = _utf8(client_id)
    if will is not None:
        topic, will_payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _utf8(topic) + _utf8(will_payload)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
    if password is not None:
        flags |= 0x40
        payload += _utf8(password)
    variable = _utf8(protocol_name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, variable + payload)


def publish_packet(topic, payload, qos=0, retain=False, packet_id=1, dup=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(first, body)


def subscribe_packet(packet_id, topics):
    body = struct.pack("!H", packet_id)
    for topic, qos in topics:
        body += _utf8(topic) + bytes([qos])
    return packet(0x82, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class ConnectionClosed(Exception):
    pass


class RawClient:
    """MQTT over a plain blocking socket, one packet at a time."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.closed_at = None
        self.opened_at = time.monotonic()

    def send(self, data):
        """Write ``data``; ConnectionClosed if the broker is gone (as ``_recv`` says it)."""
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed_at = time.monotonic()
            raise ConnectionClosed(str(e)) from None

    def _recv(self, deadline):
        """Read more bytes into the buffer; ConnectionClosed on EOF/reset; socket.timeout at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed_at = time.monotonic()
            raise ConnectionClosed(str(e)) from None
        if not data:
            self.closed_at = time.monotonic()
            raise ConnectionClosed("EOF")
        self.buffer += data

    def read_packet(self, timeout=DEFAULT_TIMEOUT):
        """Next packet as (packet_type, flags, body); ConnectionClosed; AssertionError on timeout."""
        packet = self.poll_packet(timeout)
        if packet is None:
            raise AssertionError(f"no packet within {timeout}s")
        return packet

    def _parse(self):
        buf = self.buffer
        if len(buf) < 2:
            return None
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        first = buf[0]
        body = buf[i:i + length]
        self.buffer = buf[i + length:]
        return first >> 4, first & 0x0F, body

    def connect(self, timeout=DEFAULT_TIMEOUT, **kwargs):
        """Send CONNECT, read CONNACK; returns (return_code, session_present)."""
        self.send(connect_packet(**kwargs))
        ptype, _, body = self.read_packet(timeout)
        if ptype != PacketType.CONNACK or len(body) != 2:
            raise AssertionError(f"expected CONNACK, got type {ptype} body {body!r}")
        return body[1], bool(body[0] & 1)

    def poll_packet(self, timeout):
        """Next packet as (packet_type, flags, body), or None if none within ``timeout``;
        ConnectionClosed when the broker closed the connection."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                parsed = self._parse()
                if parsed is not None:
                    return parsed
                self._recv(deadline)
        except socket.timeout:
            return None

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the broker to close the connection (discarding packets); returns when it did."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.buffer = b""
                self._recv(deadline)
        except ConnectionClosed:
            return self.closed_at
        except socket.timeout:
            raise AssertionError(f"broker did not close the connection within {timeout}s") from None

    def is_open(self, timeout=0.05):
        """True if the connection is still open after ``timeout`` (received bytes are kept)."""
        try:
            self._recv(time.monotonic() + timeout)
            return True
        except socket.timeout:
            return True
        except ConnectionClosed:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST (SO_LINGER 0): the rudest way for a client to die."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


# --------------------------------------------------------------------------- the database


def stored_messages(db_path, timeout=DEFAULT_TIMEOUT):
    """Every row of mqttd's ``messages`` table as (client_id, payload, key, topic, qos) tuples.

    Opens the SQLite file read-only (``mode=ro``) with the interpreter's sqlite3, as any
    reader would while mqttd runs or after it was killed (WAL recovery happens on open).
    """
    import sqlite3

    uri = f"file:{db_path}?mode=ro"
    deadline = time.monotonic() + timeout
    while True:
        try:
            db = sqlite3.connect(uri, uri=True, timeout=timeout)
            try:
                return db.execute(
                    "SELECT client_id, payload, key, topic, qos FROM messages").fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError as e:  # e.g. "database is locked" during a checkpoint
            if time.monotonic() >= deadline:
                raise AssertionError(f"cannot read {db_path}: {e}") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------- mosquitto clients


def mosquitto_pub(port, topic, message, qos=0, retain=False, client_id=None, extra=(), timeout=10.0):
    """Run mosquitto_pub once; returns CompletedProcess (raises AssertionError on failure)."""
    args = [MOSQUITTO_PUB, "-h", HOST, "-p", str(port), "-V", "mqttv311", "-t", topic,
            "-m", message, "-q", str(qos)]
    if retain:
        args.append("-r")
    if client_id:
        args += ["-i", client_id]
    args += list(extra)
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mosquitto_pub did not finish within {timeout}s: {e}") from None
    if result.returncode != 0:
        raise AssertionError(
            f"mosquitto_pub exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


class MosquittoSub:
    """mosquitto_sub -C COUNT -W TIMEOUT in the background, ready once its SUBACK arrived.

    Each received message is printed as ``MSG|qos|retain|topic|hexpayload``; debug lines
    (-d) tell when the subscription is in place.
    """

    PREFIX = "MSG|"

    def __init__(self, port, topic, qos=0, count=1, wait=5, client_id=None, extra=()):
        # stdbuf: mosquitto_sub's stdout is a pipe; its debug lines must arrive as written.
        args = [STDBUF, "-oL", MOSQUITTO_SUB, "-h", HOST, "-p", str(port), "-V", "mqttv311", "-t", topic,
                "-q", str(qos), "-C", str(count), "-W", str(wait), "-d",
                "-F", self.PREFIX + "%q|%r|%t|%x"]
        if client_id:
            args += ["-i", client_id]
        args += list(extra)
        self.timeout = wait + 5
        self.lines = []
        self.subscribed = threading.Event()
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if "received SUBACK" in line:
                self.subscribed.set()

    def wait_subscribed(self, timeout=DEFAULT_TIMEOUT):
        if not self.subscribed.wait(timeout):
            self.kill()
            raise AssertionError(f"mosquitto_sub not subscribed within {timeout}s: {self.lines}")

    def result(self):
        """Wait for exit; returns (returncode, [(qos, retain, topic, payload bytes)])."""
        try:
            rc = self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mosquitto_sub did not exit within {self.timeout}s: {self.lines}") from None
        self._reader.join(2)
        messages = []
        for line in self.lines:
            if line.startswith(self.PREFIX):
                qos, retain, topic, hexpayload = line[len(self.PREFIX):].split("|", 3)
                messages.append((int(qos), int(retain), topic, bytes.fromhex(hexpayload)))
        return rc, messages

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass


# --------------------------------------------------------------------------- test case base


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


class BrokerTestCase(SynchronousTestCase):
    """A fresh broker per test (``config`` is its TOML), and helpers bound to it."""

    config = ANONYMOUS

    def setUp(self):
        self.broker = start_broker(self, self.config)
        self.port = self.broker.port
        self._ids = 0

    def context(self):
        return self.broker.tail()

    def new_id(self, prefix="c"):
        self._ids += 1
        return f"{prefix}{self._ids}-{os.getpid() % 10000}"

    def client(self, client_id=None, connect=True, **kwargs):
        """A PahoClient on this broker (connected unless ``connect=False``), closed at cleanup."""
        c = PahoClient(self.port, client_id=client_id if client_id is not None else self.new_id(),
                       context=self.context, **kwargs)
        self.addCleanup(c.close)
        if connect:
            c.connect()
        return c

    def raw(self, timeout=DEFAULT_TIMEOUT):
        """A RawClient on this broker, closed at cleanup."""
        r = RawClient(self.port, timeout=timeout)
        self.addCleanup(r.close)
        return r

    def assertRoundTrip(self, topic="probe/rt", qos=1):
        """A fresh subscriber and publisher exchange one message: the broker still works."""
        sub = self.client()
        sub.subscribe(topic, qos)
        pub = self.client()
        payload = os.urandom(8)
        pub.publish(topic, payload, qos)
        message = sub.get_message()
        self.assertEqual((message.topic, message.payload), (topic, payload))
