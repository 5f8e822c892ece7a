#!/usr/bin/env python3
"""Connect storm: MQTT connects as fast as they go, CONNECT -> CONNACK; one JSON line.

Keeps ``--concurrency`` handshakes in flight from the source addresses given
(``--source-ips N``: 127.0.0.FIRST..FIRST+N-1, or ``--source ADDR``, repeatable), each
with a fresh client id (or one of ``--client-ids N`` in turn: a flapping client), with
the usernames of ``--username-file`` in turn (tokens, for the gate); on its CONNACK a connection is kept ``--hold`` seconds (0: closed
at once) and then closed, with a DISCONNECT first (``--close disconnect``) or a reset
(``--close rst``, SO_LINGER 0: no TIME_WAIT). It stops starting connects after
``--duration`` s (or ``--connects``) and waits ``--connack-timeout`` s for the last.

Every attempt ends one way, counted in ``outcomes``: ``connack`` (rc 0), ``connack_rc_N``,
``refused_eof`` / ``refused_reset`` (the broker closed the socket before any CONNACK:
what a door that refuses at accept looks like from outside), ``connect:ERRNO``,
``timeout``. ``connacks_per_s`` = connacks / (last CONNACK - start); ``latency_ms`` is
connect() -> CONNACK. The storm's own CPU (``gen_cores``, one process: over 0.9 means
the figure is generator-bound) and, with ``--broker-pid``, the broker's CPU over the
storm by process (proctree), e.g. master and workers apart.

Used for the connect-storm benchmark (many addresses, close at once) and as the flood
of the storm-isolation one (one address, hold): see storms.py.
"""
import argparse
import collections
import errno
import json
import os
import select
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import proctree  # noqa: E402
from loadgen import hist_add, hist_percentiles  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = 24
CONNACK_OK = b"\x20\x02\x00\x00"
LINGER_RESET = struct.pack("ii", 1, 0)


def classify_connack(data):
    """The outcome of the first bytes a broker sent: None if more are needed."""
    if len(data) < 4:
        return None
    if data[:4] == CONNACK_OK or (data[0] == 0x20 and data[1] == 2 and data[3] == 0):
        return "connack"
    if data[0] == 0x20 and data[1] == 2:
        return "connack_rc_%d" % data[3]
    return "bad_connack"


def sources_from(args):
    if args.source:
        return list(args.source)
    return ["127.0.0.%d" % (args.first_ip + i) for i in range(args.source_ips)]


class _Attempt:
    __slots__ = ("sock", "index", "t0", "state", "buf")


class Storm:
    """The epoll loop: start, advance and end attempts; hold and close connections."""

    def __init__(self, args):
        self.args = args
        self.sources = sources_from(args)
        self.outcomes = collections.Counter()
        self.hist = {}
        self.ep = select.epoll()
        self.live = {}  # fd -> _Attempt, handshake in progress
        self.held = collections.deque()  # (close at, socket)
        self.started = 0
        self.last_connack = None
        self.open_peak = 0
        self.usernames = common.read_lines(args.username_file) if args.username_file else None

    def _end(self, att, outcome):
        self.outcomes[outcome] += 1
        fd = att.sock.fileno()
        self.ep.unregister(fd)
        del self.live[fd]
        if outcome == "connack":
            now = time.monotonic()
            self.last_connack = now
            hist_add(self.hist, now - att.t0, 1)
            if self.args.hold > 0:
                self.held.append((now + self.args.hold, att.sock))
                self.open_peak = max(self.open_peak, len(self.held))
                return
            self._close(att.sock)
        else:
            att.sock.close()

    def _close(self, sock):
        try:
            if self.args.close == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            else:
                sock.send(common.DISCONNECT)
        except OSError:
            pass
        sock.close()

    def _start(self):
        args = self.args
        i = self.started
        self.started += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        src = self.sources[i % len(self.sources)]
        att = _Attempt()
        att.sock, att.index, att.t0, att.state, att.buf = s, i, time.monotonic(), "connect", b""
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
            rc = s.connect_ex((args.host, args.port))
        except OSError as e:
            rc = e.errno
        if rc not in (0, errno.EINPROGRESS):
            self.outcomes["connect:" + errno.errorcode.get(rc, str(rc))] += 1
            s.close()
            return
        self.live[s.fileno()] = att
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def _event(self, fd, ev):
        att = self.live.get(fd)
        if att is None:
            return
        s = att.sock
        if att.state == "connect":
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc in (errno.ECONNRESET, errno.EPIPE):
                return self._end(att, "refused_reset")  # accepted, then closed at once
            if rc:
                return self._end(att, "connect:" + errno.errorcode.get(rc, str(rc)))
            cid = "%s-%d" % (self.args.client_prefix, att.index % self.args.client_ids
                             if self.args.client_ids else att.index)
            user = self.usernames[att.index % len(self.usernames)] if self.usernames else None
            try:
                s.send(common.connect_packet(cid, keepalive=self.args.keepalive, username=user,
                                             password=user if self.args.password_same else None))
            except OSError as e:
                return self._end(att, self._refusal(e))
            att.state = "connack"
            self.ep.modify(fd, select.EPOLLIN)
            return
        try:
            data = s.recv(64)
        except BlockingIOError:
            return
        except OSError as e:
            return self._end(att, self._refusal(e))
        if not data:
            return self._end(att, "refused_eof")
        att.buf += data
        outcome = classify_connack(att.buf)
        if outcome is not None:
            self._end(att, outcome)

    @staticmethod
    def _refusal(e):
        if e.errno in (errno.ECONNRESET, errno.EPIPE):
            return "refused_reset"
        return "io:" + errno.errorcode.get(e.errno, str(e.errno))

    def _expire(self, now, deadline):
        held = self.held
        while held and held[0][0] <= now:
            self._close(held.popleft()[1])
        for fd, att in list(self.live.items()):
            if now - att.t0 > deadline:
                self._end(att, "timeout")

    def run(self):
        args = self.args
        start = time.monotonic()
        stop = start + args.duration
        cutoff = stop + args.connack_timeout
        last_sweep = start
        while True:
            now = time.monotonic()
            starting = now < stop and (args.connects is None or self.started < args.connects)
            if not starting and not self.live:
                break
            if now > cutoff:
                break
            while starting and len(self.live) < args.concurrency and (
                    args.max_open is None or len(self.held) + len(self.live) < args.max_open):
                self._start()
                starting = args.connects is None or self.started < args.connects
            for fd, ev in self.ep.poll(0.05):
                self._event(fd, ev)
            if now - last_sweep > 0.05:
                self._expire(now, args.connack_timeout)
                last_sweep = now
        for att in list(self.live.values()):
            self._end(att, "timeout")
        end, cpu = time.monotonic(), os.times()  # before the held ones are closed
        while self.held:
            self._close(self.held.popleft()[1])
        self.ep.close()
        return start, end, cpu


def run(args):
    soft, hard, _ = common.raise_nofile(args.concurrency + (args.max_open or 0) + 64)
    storm = Storm(args)
    b0 = proctree.snapshot(args.broker_pid) if args.broker_pid else None
    cpu0 = os.times()
    start, end, cpu1 = storm.run()
    b1 = proctree.snapshot(args.broker_pid) if args.broker_pid else None
    connacks = storm.outcomes["connack"]
    busy = storm.last_connack - start if storm.last_connack else 0.0
    wall = end - start
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    out = {
        "tool": "connect_storm", "host": args.host, "port": args.port,
        "sources": storm.sources if len(storm.sources) <= 4 else
        "%s..%s (%d)" % (storm.sources[0], storm.sources[-1], len(storm.sources)),
        "concurrency": args.concurrency, "hold_s": args.hold, "close": args.close,
        "attempts": storm.started, "outcomes": dict(storm.outcomes),
        "connacks": connacks,
        "refused": sum(v for k, v in storm.outcomes.items() if k.startswith("refused")),
        "connacks_per_s": round(connacks / busy, 1) if busy > 0 else 0.0,
        "attempts_per_s": round(storm.started / wall, 1) if wall > 0 else 0.0,
        "latency_ms": hist_percentiles(storm.hist),
        "open_peak": storm.open_peak, "wall_s": round(wall, 3),
        "gen_cpu_s": round(cpu, 3), "gen_cores": round(cpu / wall, 3) if wall > 0 else None,
        "nofile": [soft, hard],
    }
    if b0 and b1:
        ticks = proctree.ticks_by_name(b0, b1)
        out["broker_cpu_s"] = round(sum(ticks.values()) / common.CLK_TCK, 3)
        out["broker_cpu_by_process"] = {k: round(v / common.CLK_TCK, 3) for k, v in ticks.items()}
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of starting connects")
    p.add_argument("--connects", type=int, default=None, help="stop after this many attempts")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    p.add_argument("--source-ips", type=int, default=20,
                   help="source addresses 127.0.0.FIRST.. (default 20)")
    p.add_argument("--first-ip", type=int, default=1)
    p.add_argument("--source", action="append", help="a source address (repeatable; "
                   "replaces --source-ips)")
    p.add_argument("--hold", type=float, default=0.0,
                   help="seconds to keep a connection after its CONNACK (default 0)")
    p.add_argument("--max-open", type=int, default=None,
                   help="at most this many connections held + in handshake at once")
    p.add_argument("--close", choices=("disconnect", "rst"), default="disconnect")
    p.add_argument("--keepalive", type=int, default=0)
    p.add_argument("--connack-timeout", type=float, default=5.0)
    p.add_argument("--client-prefix", default="storm-%d" % os.getpid())
    p.add_argument("--client-ids", type=int, default=0,
                   help="reuse this many client ids in turn (0: a fresh one every attempt)")
    p.add_argument("--username-file", metavar="FILE",
                   help="usernames (e.g. tokens), one a line, used in turn by the attempts")
    p.add_argument("--password-same", action="store_true",
                   help="send each username as the password too")
    p.add_argument("--broker-pid", type=int, default=None,
                   help="report this process tree's CPU over the storm, by process")
    a = p.parse_args(argv)
    if a.concurrency < 1 or (a.source is None and not 1 <= a.first_ip <= 254):
        p.error("--concurrency >= 1 and 1 <= --first-ip <= 254")
    return a


def main(argv=None):
    out = run(parse_args(argv))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0 if out["attempts"] else 1


if __name__ == "__main__":
    sys.exit(main())
