"""A fault-injecting HTTP proxy between mqttd's webhook client and its ingest tier.

Test infrastructure, not part of the broker: plain threads, ``http.server`` and
``http.client`` in the test process. The broker is configured with
``webhook.url = proxy.url`` and ``ingest.listen`` on ``proxy.upstream_port``; the proxy
forwards POSTs there, or misbehaves, depending on its mode:

``PASS``     forward the request, relay the answer.
``ERROR``    answer 500 without forwarding (nothing stored).
``HANG``     read the request, never answer; when released (mode changed, ``release()``
             or ``close()``) drop the connection, still without an answer.
``DROP``     forward (the ingest COMMITS the rows), then close the connection without
             answering: committed, but the broker never hears it.
``REFUSE``   the listening socket is closed (connections refused by the kernel) and the
             open keep-alive connections are shut; leaving this mode re-opens the
             listener on the same port.

The mode is read once a request has been read in full, so a request read after
``set_mode`` returned gets the new behaviour. ``counts[mode]`` counts requests handled in
each mode; ``forwarded``, ``committed_unanswered`` and ``duplicates`` (summed from the
ingest's 200 answers) say what reached the ingest.
"""
import errno
import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"

PASS, ERROR, HANG, DROP, REFUSE = "pass", "error", "hang", "drop", "refuse"
MODES = (PASS, ERROR, HANG, DROP, REFUSE)

#: Longest a hung request is held even if nobody releases it (keeps threads bounded).
HANG_LIMIT = 30.0
UPSTREAM_TIMEOUT = 10.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, proxy):
        self.proxy = proxy
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the broker's pool expects

    def setup(self):
        super().setup()
        self.server.proxy._track(self.connection, True)
        self._upstream = None

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, False)
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, format, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _forward(self, body):
        """POST ``body`` to the ingest; returns (status, content_type, data)."""
        proxy = self.server.proxy
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if "Authorization" in self.headers:  # the ingest tier's secret, passed through
            headers["Authorization"] = self.headers["Authorization"]
        for attempt in (1, 2):  # a stale keep-alive connection gets one fresh try
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(HOST, proxy.upstream_port,
                                                            timeout=UPSTREAM_TIMEOUT)
            try:
                self._upstream.request("POST", self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self._upstream.close()
                self._upstream = None
            proxy._forwarded(response.status, data)
            return response.status, response.getheader("Content-Type", "application/json"), data

    def _answer(self, status, content_type, data, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self):
        """Close without answering (the client sees EOF where the response should be)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_POST(self):
        proxy = self.server.proxy
        body = self._read_body()
        mode = proxy._request(body)
        if mode == PASS:
            try:
                status, content_type, data = self._forward(body)
            except (OSError, http.client.HTTPException) as e:
                proxy._count("upstream_error")
                self._answer(502, "application/json", json.dumps({"error": str(e)}).encode())
                return
            self._answer(status, content_type, data)
        elif mode == ERROR:
            self._answer(500, "application/json", b'{"error": "injected by faultproxy"}')
        elif mode == HANG:
            proxy._hang_released.wait(HANG_LIMIT)
            self._drop()
        elif mode == DROP:
            try:
                status, _, _ = self._forward(body)
            except (OSError, http.client.HTTPException):
                proxy._count("upstream_error")
            else:
                if status == 200:
                    proxy._count("committed_unanswered")
            self._drop()
        else:  # REFUSE: a request on a connection that was open before the listener closed
            self._drop()


class FaultProxy:
    """The proxy; ``start()`` before the broker, ``close()`` at cleanup (idempotent)."""

    def __init__(self, upstream_port, port=0):
        self.upstream_port = upstream_port
        self.port = port
        self._lock = threading.Lock()
        self._mode = PASS
        self._server = None
        self._thread = None
        self._connections = set()
        self._hang_released = threading.Event()
        self.counts = Counter()  # requests handled per mode, plus a few events
        self.messages_seen = Counter()  # messages in requests, per mode
        self.duplicates = 0  # sum of "duplicates" in the ingest's 200 answers
        self.forwarded = 0
        self.mode_log = []  # (monotonic time, mode) at every switch

    @property
    def url(self):
        return f"http://{HOST}:{self.port}/v1/messages"

    @property
    def mode(self):
        return self._mode

    # -- life cycle

    def start(self):
        self._listen()
        self.mode_log.append((time.monotonic(), PASS))
        return self

    def _listen(self, attempts=50):
        last = None
        for _ in range(attempts):
            try:
                self._server = _Server((HOST, self.port), self)
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or self.port == 0:
                    raise
                last = e
                time.sleep(0.02)
        else:
            raise AssertionError(f"faultproxy could not re-open port {self.port}: {last}")
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"faultproxy-{self.port}", daemon=True)
        self._thread.start()

    def _unlisten(self):
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(5)
        self._shut_connections()

    def _shut_connections(self):
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._hang_released.set()
        self._unlisten()

    # -- modes

    def set_mode(self, mode):
        """Switch behaviour now; returns the switch's time.monotonic()."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            old, self._mode = self._mode, mode
            if mode == HANG:
                self._hang_released.clear()
        if old == HANG and mode != HANG:
            self._hang_released.set()
        if mode == REFUSE and old != REFUSE:
            self._unlisten()
        elif old == REFUSE and mode != REFUSE:
            self._listen()
        now = time.monotonic()
        self.mode_log.append((now, mode))
        return now

    def release(self):
        """Let hung requests go (they are dropped unanswered)."""
        self._hang_released.set()

    def connection_refused(self):
        """True if a fresh connection to the proxy's port is refused right now."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0):
                return False
        except ConnectionRefusedError:
            return True

    # -- called from handler threads

    def _track(self, sock, add):
        with self._lock:
            if add:
                self._connections.add(sock)
                self.counts["connections"] += 1
            else:
                self._connections.discard(sock)

    def _request(self, body):
        with self._lock:
            mode = self._mode
            self.counts[mode] += 1
            try:
                self.messages_seen[mode] += len(json.loads(body)["key"])
            except (ValueError, KeyError, TypeError):
                self.counts["unparsed"] += 1
            return mode

    def _count(self, what):
        with self._lock:
            self.counts[what] += 1

    def _forwarded(self, status, data):
        with self._lock:
            self.forwarded += 1
            self.counts[f"upstream_{status}"] += 1
            if status == 200:
                try:
                    self.duplicates += int(json.loads(data)["duplicates"])
                except (ValueError, KeyError, TypeError):
                    pass
