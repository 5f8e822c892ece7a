"""Shared helpers for the benchmark tools: a minimal MQTT 3.1.1 encoder, fd limits,
source-address spreading and a bounded, non-blocking mass connect.

Deliberately independent of mqttd (no Twisted, no mqttd.codec): the load generator
must not share bugs or costs with the broker it measures.
"""
import errno
import math
import os
import re
import resource
import selectors
import socket
import struct
import time

import proctree

PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
PUBACK_HEADER = b"\x40\x02"


def varint(n):
    """MQTT remaining-length encoding."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def mqtt_str(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return struct.pack("!H", len(value)) + value


def read_lines(path):
    """The non-empty lines of a file, stripped (usernames, tokens)."""
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def connect_packet(client_id, keepalive=0, clean=True, username=None, password=None):
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
        if password is not None:
            flags |= 0x40
            payload += mqtt_str(password)
    variable = mqtt_str(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + payload
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic, payload, qos=0, packet_id=0, retain=False):
    header = 0x30 | (qos << 1) | (1 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    body += payload
    return bytes([header]) + varint(len(body)) + body


def puback_packet(packet_id):
    return PUBACK_HEADER + struct.pack("!H", packet_id)


# Every payload the load generator sends starts with this tag: which connection sent it
# and its sequence number on that connection (0, 1, 2, ...), fixed width so every packet
# of a run has the same length. The durability check reads it back from mqttd.db.
TAG = b"lg%06d.%010d."
TAG_LEN = len(TAG % (0, 0))
_TAG_RE = re.compile(rb"lg(\d{6})\.(\d{10})\.")


def payload_tag(index, seq):
    return TAG % (index, seq)


def parse_tag(payload):
    """(connection index, sequence number) from a payload, or None when it has no tag."""
    m = _TAG_RE.match(payload)
    return (int(m.group(1)), int(m.group(2))) if m else None


def raise_nofile(wanted=None):
    """Raise RLIMIT_NOFILE's soft limit toward ``wanted`` (default: the hard limit).

    Returns (soft, hard, ok) where ok says the soft limit now covers ``wanted``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted is not None and hard != resource.RLIM_INFINITY:
        target = min(max(wanted, soft), hard)
    elif wanted is not None:
        target = max(wanted, soft)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ok = wanted is None or soft >= wanted
    return soft, hard, ok


def auto_source_ips(connections, per_ip=250, cap=50):
    """How many loopback source addresses to spread ``connections`` over."""
    return max(1, min(cap, math.ceil(connections / per_ip)))


def source_address(index, n_ips, host):
    """Round-robin source address 127.0.0.1..127.0.0.n_ips for loopback targets.

    Returns None (let the kernel choose) for non-loopback targets or n_ips <= 1.
    """
    if n_ips <= 1 or not host.startswith("127."):
        return None
    return "127.0.0.%d" % (1 + index % n_ips)


def read_rss(pid):
    """VmRSS of one process in bytes (None if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return proctree.parse_rss(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def descendants(pid):
    """pid and all its descendants (scans /proc once)."""
    return proctree.descendants(pid)


def tree_cpu_ticks(pid):
    """CPU (clock ticks, user+system) of ``pid`` and all its descendants; None if pid is gone.

    Each live process counts its own time plus that of its children already reaped
    (cutime, cstime): so a worker that exits during a run still counts, once.
    """
    return proctree.total_ticks(proctree.snapshot(pid))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_rss(pid, tree=False):
    """VmRSS of ``pid`` (with ``tree``: summed over it and all its descendants)."""
    if not tree:
        return read_rss(pid)
    return proctree.total_rss(proctree.snapshot(pid))


def wait_rss_steady(pid, step=0.5, within=256 * 1024, timeout=20.0):
    """Wait until the RSS of ``pid``'s whole process tree moves by at most ``within``
    bytes over ``step`` seconds, twice running (at most ``timeout`` s). Returns the
    seconds waited."""
    start = time.monotonic()
    last, steady = tree_rss(pid, tree=True), 0
    while steady < 2 and time.monotonic() - start < timeout:
        time.sleep(step)
        now = tree_rss(pid, tree=True)
        if now is None:
            break
        steady = steady + 1 if last is not None and abs(now - last) <= within else 0
        last = now
    return time.monotonic() - start


class Conn:
    """One client socket and its per-connection load state (used by loadgen too)."""

    __slots__ = (
        "sock", "index", "client_id", "rbuf", "state", "connect_pkt", "t0",
        # loadgen state
        "quota", "sent", "acked", "outstanding", "pub_pos", "ack_pos", "fifo",
        "wbuf", "done", "ping_sent", "closed",
        # unique payloads: this connection's block format, its current block, the
        # sequence number of that block's first packet
        "fmt", "pub", "block_base",
    )

    def __init__(self, index, client_id, connect_pkt):
        self.sock = None
        self.index = index
        self.client_id = client_id
        self.connect_pkt = connect_pkt
        self.rbuf = b""
        self.state = "new"
        self.t0 = 0.0
        self.closed = False


def _errname(code):
    return errno.errorcode.get(code, str(code))


def open_connections(host, port, conns, n_source_ips=1, timeout=60.0, max_pending=512,
                     sndbuf=None, rcvbuf=None):
    """Open every Conn in ``conns``: TCP connect, send CONNECT, wait CONNACK (rc 0).

    At most ``max_pending`` handshakes are in progress at once; the whole thing stops
    after ``timeout`` seconds. Returns (connected list, errors dict, seconds).
    Sockets of connected Conns are non-blocking with TCP_NODELAY.
    """
    sel = selectors.DefaultSelector()
    errors = {}
    ok = []
    todo = list(reversed(conns))
    pending = 0
    start = time.monotonic()
    deadline = start + timeout

    def fail(conn, why):
        nonlocal pending
        errors[why] = errors.get(why, 0) + 1
        if conn.sock is not None:
            try:
                sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
        conn.state = "failed"
        conn.closed = True
        pending -= 1

    try:
        while (todo or pending) and time.monotonic() < deadline:
            while todo and pending < max_pending:
                conn = todo.pop()
                pending += 1
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as e:
                    conn.sock = None
                    fail(conn, "socket:" + _errname(e.errno))
                    continue
                conn.sock = s
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if sndbuf:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
                if rcvbuf:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                src = source_address(conn.index, n_source_ips, host)
                try:
                    if src:
                        s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
                        s.bind((src, 0))
                    rc = s.connect_ex((host, port))
                except OSError as e:
                    fail(conn, "bind:" + _errname(e.errno))
                    continue
                if rc not in (0, errno.EINPROGRESS):
                    fail(conn, "connect:" + _errname(rc))
                    continue
                conn.state = "connecting"
                conn.t0 = time.monotonic()
                sel.register(s, selectors.EVENT_WRITE, conn)
            if not pending:
                continue
            for key, _ in sel.select(timeout=0.2):
                conn = key.data
                s = conn.sock
                if conn.state == "connecting":
                    rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if rc:
                        fail(conn, "connect:" + _errname(rc))
                        continue
                    try:
                        s.send(conn.connect_pkt)  # tiny: fits in an empty send buffer
                    except OSError as e:
                        fail(conn, "send:" + _errname(e.errno))
                        continue
                    conn.state = "connack"
                    sel.modify(s, selectors.EVENT_READ, conn)
                elif conn.state == "connack":
                    try:
                        data = s.recv(64)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        fail(conn, "recv:" + _errname(e.errno))
                        continue
                    if not data:
                        fail(conn, "closed_before_connack")
                        continue
                    conn.rbuf += data
                    if len(conn.rbuf) < 4:
                        continue
                    if conn.rbuf[0] != 0x20 or conn.rbuf[1] != 2:
                        fail(conn, "bad_connack")
                        continue
                    if conn.rbuf[3] != 0:
                        fail(conn, "connack_rc_%d" % conn.rbuf[3])
                        continue
                    conn.rbuf = conn.rbuf[4:]
                    conn.state = "connected"
                    sel.unregister(s)
                    pending -= 1
                    ok.append(conn)
            # per-handshake timeout: a broker that never answers should not hang us
        for key in list(sel.get_map().values()):
            fail(key.data, "connect_timeout")
        for conn in todo:
            errors["not_attempted"] = errors.get("not_attempted", 0) + 1
    finally:
        sel.close()
    return ok, errors, time.monotonic() - start


def close_all(conns, polite=True):
    for conn in conns:
        if conn.sock is None:
            continue
        if polite:
            try:
                conn.sock.send(DISCONNECT)
            except OSError:
                pass
        conn.sock.close()
        conn.sock = None
