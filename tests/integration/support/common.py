"""What every integration helper shares: the loopback address, the timeouts, a free
port, and ``wait_for``, the bounded poll. Every wait is bounded: a broken broker makes a
test fail with the broker's output in the message, never hang.
"""
import socket
import time

HOST = "127.0.0.1"
STDBUF = "/usr/bin/stdbuf"

STOP_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 5.0


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
