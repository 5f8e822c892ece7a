#!/usr/bin/env python3
"""Fast MQTT 3.1.1 load generator: one JSON line on stdout.

Plain non-blocking sockets + epoll, no Twisted, its own encoder. Cheap by design so the
broker, not this tool, is the bottleneck:

* PUBLISH packets are pre-encoded in blocks cycling through packet ids 1..M (M > window),
  so writing n publishes is one slice and one send(); every payload is unique, tagged
  with its connection and sequence number (publish_streams.py), and the output lists
  each connection's publishes sent and PUBACKs received ("clients"), so compare.py can
  match mqttd.db's rows to the messages one by one;
* brokers must send QoS 1 PUBACKs in order (MQTT 3.1.1 section 4.6), so the expected
  PUBACK stream is pre-encoded too and a receive buffer of n PUBACKs is checked with a
  single bytes comparison; anything else falls to a slow parser that counts errors;
* latency is taken per write batch (all publishes of one send() share a write time) and
  per receive batch, kept in a log histogram (2 % buckets).

QoS 1: msgs/s = PUBACKs received / (last PUBACK - start). The window W caps unacked
publishes per connection. QoS 0: publishes written, then one PINGREQ per connection;
msgs/s = publishes written / (last PINGRESP - start), so the broker has read them all.

Every run is bounded: --duration (default 5 s) or --messages, plus --drain-timeout for
the tail and --max-time as a hard stop. --procs N splits connections over N forked
processes (when this tool, not the broker, saturates a core: loadgen_cores is the CPU
of all of them while publishing, loadgen_busiest that of the busiest one).
--broker-pid adds the broker's CPU over the same interval (broker_cpu_s), summed over
the process and all its descendants from /proc.
"""
import argparse
import collections
import json
import math
import os
import select
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import proctree  # noqa: E402
from publish_streams import Streams  # noqa: E402

BUCKETS_PER_E = 50  # log histogram: exp(1/50) ~ 2 % per bucket


def hist_add(hist, seconds, count):
    idx = int(math.log1p(seconds * 1e6) * BUCKETS_PER_E)
    hist[idx] = hist.get(idx, 0) + count


def hist_percentiles(hist, ps=(50, 90, 99)):
    total = sum(hist.values())
    out = {"count": total}
    if not total:
        for p in ps:
            out["p%d" % p] = None
        out["max"] = None
        return out
    items = sorted(hist.items())
    to_ms = lambda idx: round(math.expm1((idx + 0.5) / BUCKETS_PER_E) / 1000.0, 3)  # noqa: E731
    for p in ps:
        want = total * p / 100.0
        acc = 0
        for idx, count in items:
            acc += count
            if acc >= want:
                out["p%d" % p] = to_ms(idx)
                break
    out["max"] = to_ms(items[-1][0])
    return out


class Poller:
    """epoll with a selectors-like register/modify/unregister, minus the per-event
    SelectorKey objects (the QoS 1 loop reads ``ep.poll`` and ``conns`` directly)."""

    READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
    IN = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP

    def __init__(self):
        self.ep = select.epoll()
        self.conns = {}

    @staticmethod
    def _flags(ev):
        return (select.EPOLLIN if ev & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if ev & selectors.EVENT_WRITE else 0)

    def register(self, sock, ev, conn):
        fd = sock.fileno()
        self.conns[fd] = conn
        self.ep.register(fd, self._flags(ev))

    def modify(self, sock, ev, conn):
        self.ep.modify(sock.fileno(), self._flags(ev))

    def unregister(self, sock):
        fd = sock.fileno()
        self.conns.pop(fd, None)
        self.ep.unregister(fd)

    def select(self, timeout):
        conns, IN = self.conns, self.IN
        out = []
        for fd, e in self.ep.poll(timeout):
            c = conns.get(fd)
            if c is not None:
                out.append((c, (selectors.EVENT_READ if e & IN else 0)
                            | (selectors.EVENT_WRITE if e & select.EPOLLOUT else 0)))
        return out


class Worker:
    def __init__(self, args, conns, streams):
        self.a = args
        self.conns = conns
        self.s = streams
        self.hist = {}
        self.errors = collections.Counter()
        self.sel = Poller()
        self.stopping = False
        self.first_t = None
        self.last_t = None
        self.ping_hist = {}

    # -- shared ---------------------------------------------------------------
    def _close(self, conn, why):
        if conn.closed:
            return
        self.errors[why] += 1
        conn.closed = True
        conn.done = True
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _flush(self, conn):
        """Write pending bytes; True when nothing is left pending."""
        try:
            n = conn.sock.send(conn.wbuf)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._close(conn, "send:" + common._errname(e.errno))
            return False
        conn.wbuf = conn.wbuf[n:]
        return not conn.wbuf

    def _want_write(self, conn, on):
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        self.sel.modify(conn.sock, ev, conn)

    # -- QoS 1 -----------------------------------------------------------------
    def _send_more(self, conn, now):
        if self.stopping:
            return
        n = min(self.a.window - conn.outstanding, conn.quota - conn.sent)
        if n <= 0:
            return
        data = self.s.take(conn, n)
        conn.fifo.append([now, n])
        conn.outstanding += n
        conn.sent += n
        if conn.wbuf:
            conn.wbuf = bytes(conn.wbuf) + bytes(data)
            return
        try:
            w = conn.sock.send(data)
        except BlockingIOError:
            w = 0
        except OSError as e:
            self._close(conn, "send:" + common._errname(e.errno))
            return
        if w < len(data):
            conn.wbuf = data[w:]
            self._want_write(conn, True)

    def _pace(self, active, allowed, now):
        """--rate: let each connection have sent ``allowed`` publishes by now (its quota),
        and send what that and its window permit."""
        allowed = int(allowed) + 1
        for c in active:
            if not c.closed and c.quota < allowed:
                c.quota = allowed
                self._send_more(c, now)

    def _acked(self, conn, n, now):
        conn.ack_pos = (conn.ack_pos + n) % self.s.M
        conn.acked += n
        conn.outstanding -= n
        fifo = conn.fifo
        hist = self.hist
        while n:
            head = fifo[0]
            take = head[1] if head[1] <= n else n
            hist_add(hist, now - head[0], take)
            head[1] -= take
            n -= take
            if not head[1]:
                fifo.popleft()

    def _slow_parse(self, conn, buf, now):
        """Parse whatever the broker sent; returns the unconsumed tail."""
        i = 0
        while len(buf) - i >= 2:
            # remaining length (up to 4 bytes)
            rl, mult, j = 0, 1, i + 1
            while True:
                if j >= len(buf):
                    return buf[i:]
                b = buf[j]
                rl += (b & 0x7F) * mult
                mult <<= 7
                j += 1
                if not b & 0x80:
                    break
                if j - i > 4:
                    self._close(conn, "malformed_from_broker")
                    return b""
            if len(buf) < j + rl:
                return buf[i:]
            ptype = buf[i]
            if ptype == 0x40 and rl == 2:
                pid = (buf[j] << 8) | buf[j + 1]
                if conn.outstanding <= 0:
                    self.errors["puback_unexpected"] += 1
                else:
                    if pid != conn.ack_pos + 1:
                        self.errors["puback_out_of_order"] += 1
                    self._acked(conn, 1, now)
            elif ptype == 0xD0:
                if self.a.qos == 0:
                    self._on_pingresp(conn, now)
                else:
                    self.errors["pingresp_unexpected"] += 1
            elif ptype == 0xE0:
                self.errors["disconnect_from_broker"] += 1
            else:
                self.errors["unexpected_packet_0x%02x" % ptype] += 1
            i = j + rl
        return buf[i:]

    def run_qos1(self, t_start):
        a = self.a
        active = [c for c in self.conns if not c.closed]
        for c in active:
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        now = time.perf_counter()
        self.first_t = now
        self.last_t = now
        if a.rate:
            for c in active:
                c.quota = 0  # raised every 10 ms by _pace
            self._pace(active, 0, now)
        for c in active:
            self._send_more(c, now)
        stop_at = now + a.duration if a.duration else float("inf")
        hard = now + a.max_time
        drain_end = None
        next_check = 0.0
        # hot loop: everything for the common case (a buffer of in-order PUBACKs) inline
        poll = self.sel.ep.poll
        fdmap = self.sel.conns
        IN, OUT = Poller.IN, select.EPOLLOUT
        perf = time.perf_counter
        log1p = math.log1p
        hist = self.hist
        ack = self.s.ack
        next_publishes = self.s.take
        M, W = self.s.M, a.window
        rate = a.rate  # publishes a second per connection (None: as fast as acks allow)
        while True:
            now = perf()
            if not self.stopping and now >= stop_at:
                self.stopping = True
                drain_end = now + a.drain_timeout
            if now >= hard or (drain_end and now >= drain_end):
                break
            if now >= next_check:
                next_check = now + 0.01
                if all(c.done or c.closed for c in active):
                    break
                if rate:
                    self._pace(active, rate * (now - self.first_t), now)
            events = poll(0.01 if rate else 0.05)
            now = perf()  # one timestamp per batch of events
            for fd, ev in events:
                c = fdmap.get(fd)
                if c is None or c.closed:
                    continue
                if ev & OUT:
                    if self._flush(c) and not c.closed:
                        self._want_write(c, False)
                    if c.closed:
                        continue
                if not ev & IN:
                    continue
                try:
                    data = c.sock.recv(16384)  # small: a 256 KiB buffer costs an mmap per call
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._close(c, "recv:" + common._errname(e.errno))
                    continue
                if not data:
                    self._close(c, "closed_by_broker")
                    continue
                buf = c.rbuf + data if c.rbuf else data
                n = len(buf) >> 2
                p = c.ack_pos << 2
                if n and n <= c.outstanding and buf[:n << 2] == ack[p:p + (n << 2)]:
                    c.ack_pos = (c.ack_pos + n) % M
                    c.acked += n
                    c.outstanding -= n
                    c.rbuf = buf[n << 2:] if len(buf) & 3 else b""
                    fifo = c.fifo
                    while n:
                        head = fifo[0]
                        take = head[1] if head[1] <= n else n
                        idx = int(log1p((now - head[0]) * 1e6) * BUCKETS_PER_E)
                        hist[idx] = hist.get(idx, 0) + take
                        head[1] -= take
                        n -= take
                        if not head[1]:
                            fifo.popleft()
                else:
                    c.rbuf = self._slow_parse(c, buf, now)
                    if c.closed:
                        continue
                self.last_t = now
                # refill the window
                k = W - c.outstanding
                if c.quota - c.sent < k:
                    k = c.quota - c.sent
                if k > 0 and not self.stopping:
                    if c.wbuf:
                        self._send_more(c, now)
                    else:
                        chunk = next_publishes(c, k)
                        c.fifo.append([now, k])
                        c.outstanding += k
                        c.sent += k
                        try:
                            w = c.sock.send(chunk)
                        except BlockingIOError:
                            w = 0
                        except OSError as e:
                            self._close(c, "send:" + common._errname(e.errno))
                            continue
                        if w < len(chunk):
                            c.wbuf = chunk[w:]
                            self._want_write(c, True)
                if c.outstanding == 0 and (self.stopping or (c.sent >= c.quota and not rate)):
                    c.done = True
        unacked = sum(c.outstanding for c in active if not c.closed)
        if unacked:
            self.errors["unacked_at_end"] += unacked
        if now >= hard:
            self.errors["hit_max_time"] += 1
        return {
            "sent": sum(c.sent for c in self.conns),
            "acked": sum(c.acked for c in self.conns),
            "start": self.first_t,
            "end": self.last_t,
        }

    # -- QoS 0 -----------------------------------------------------------------
    # Publishes are written as fast as the socket takes them, but a PINGREQ follows
    # every --ping-every publishes and at most --max-pings may be unanswered: that
    # bounds what sits in socket buffers (so the final PINGRESP comes back promptly
    # and "written" really means "read by the broker"), and the PINGREQ round trips
    # give a latency figure for QoS 0 (ping_rtt_ms).
    def _on_pingresp(self, conn, now):
        if not conn.fifo:
            self.errors["pingresp_unexpected"] += 1
            return
        hist_add(self.ping_hist, now - conn.fifo.popleft(), 1)
        conn.outstanding -= 1
        if conn.ping_sent and not conn.outstanding:  # final PINGRESP
            conn.done = True
            self.last_t = now
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        elif not conn.ping_sent and not conn.closed:
            self._want_write(conn, True)

    def _send_ping(self, conn):
        conn.fifo.append(time.perf_counter())
        conn.outstanding += 1
        conn.wbuf = common.PINGREQ
        return self._flush(conn)

    def _on_write_qos0(self, conn):
        if conn.wbuf and not self._flush(conn):
            return
        if conn.ping_sent:  # final PINGREQ now fully written
            if not conn.closed:
                self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        step = self.a.ping_every * self.s.L
        while not conn.closed and not conn.ping_sent:
            if conn.outstanding >= self.a.max_pings:
                self._want_write(conn, False)  # resumed by a PINGRESP
                return
            target = conn.quota if conn.quota < conn.ack_pos else conn.ack_pos
            left = target - conn.sent
            while left > 0:
                off = conn.pub_pos
                chunk = conn.pub
                clen = len(chunk)
                n = clen - off if clen - off < left else int(left)
                try:
                    w = conn.sock.send(chunk[off:off + n])
                except BlockingIOError:
                    return
                except OSError as e:
                    self._close(conn, "send:" + common._errname(e.errno))
                    return
                conn.sent += w
                left -= w
                conn.pub_pos = off + w
                if conn.pub_pos == clen:
                    conn.pub_pos = 0
                    self.s.qos0_block_done(conn)
                if w < n:
                    return
            if conn.sent >= conn.quota:
                conn.ping_sent = True  # the final one
                if self._send_ping(conn) and not conn.closed:
                    self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
                return
            conn.ack_pos += step  # next ping boundary (bytes)
            if not self._send_ping(conn):
                return

    def run_qos0(self, t_start):
        a = self.a
        L = self.s.L
        active = [c for c in self.conns if not c.closed]
        for c in active:
            c.sent = 0  # bytes of publishes written
            c.pub_pos = 0  # offset in the pre-encoded chunk
            c.ack_pos = a.ping_every * L  # byte offset of the next paced PINGREQ
            c.outstanding = 0  # unanswered PINGREQs
            c.ping_sent = False  # final PINGREQ written
            c.quota = c.quota * L if c.quota != float("inf") else c.quota
            self.sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        now = time.perf_counter()
        self.first_t = now
        self.last_t = now
        stop_at = now + a.duration if a.duration else float("inf")
        hard = now + a.max_time
        drain_end = None
        next_check = 0.0
        while True:
            now = time.perf_counter()
            if not self.stopping and now >= stop_at:
                self.stopping = True
                drain_end = now + a.drain_timeout
                for c in active:  # finish the packet in progress, then the final PINGREQ
                    if not c.closed and not c.ping_sent:
                        c.quota = c.sent + (-c.sent) % L
                        if c.outstanding < a.max_pings:
                            self._want_write(c, True)
            if now >= hard or (drain_end and now >= drain_end):
                break
            if now >= next_check:
                next_check = now + 0.01
                if all(c.done or c.closed for c in active):
                    break
            for c, mask in self.sel.select(timeout=0.05):
                if c.closed:
                    continue
                if mask & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(16384)
                    except BlockingIOError:
                        data = None
                    except OSError as e:
                        self._close(c, "recv:" + common._errname(e.errno))
                        continue
                    if data == b"":
                        self._close(c, "closed_by_broker")
                        continue
                    if data:
                        c.rbuf = self._slow_parse(c, c.rbuf + data, time.perf_counter())
                if mask & selectors.EVENT_WRITE and not c.closed and not c.done:
                    self._on_write_qos0(c)
        waiting = sum(1 for c in active if not c.closed and not c.done)
        if waiting:
            self.errors["no_final_pingresp"] += waiting
        if now >= hard:
            self.errors["hit_max_time"] += 1
        written = sum(c.sent // L for c in self.conns if c.sent)
        return {"sent": written, "acked": None, "start": self.first_t, "end": self.last_t}


def make_conns(args, indices):
    conns = []
    names = common.read_lines(args.username_file) if args.username_file else None
    for i in indices:
        cid = "%s-%d" % (args.client_prefix, i)
        user = names[i % len(names)] if names else args.username
        pkt = common.connect_packet(cid, keepalive=args.keepalive, username=user,
                                    password=user if names and args.password_same
                                    else args.password)
        c = common.Conn(i, cid, pkt)
        c.quota = float("inf")
        c.sent = c.acked = c.outstanding = c.pub_pos = c.ack_pos = 0
        c.fifo = collections.deque()
        c.wbuf = b""
        c.done = False
        c.ping_sent = None
        conns.append(c)
    if args.messages:
        base, extra = divmod(args.messages, args.connections)
        for c in conns:
            c.quota = base + (1 if c.index < extra else 0)
    return conns


def phase_connect(args, indices):
    conns = make_conns(args, indices)
    sndbuf = args.sndbuf if args.sndbuf else None
    ok, errors, secs = common.open_connections(
        args.host, args.port, conns, args.source_ips, timeout=args.connect_timeout,
        sndbuf=sndbuf)
    return conns, ok, errors, secs


def phase_run(args, conns, sample_broker=True):
    """The measured phase of this process: its own CPU and wall time, and (single
    process) the broker's CPU over the same interval."""
    streams = Streams(args.topic, args.payload_size, args.qos, args.window)
    for c in conns:
        streams.attach(c)
    w = Worker(args, conns, streams)
    b0 = broker_ticks(args) if sample_broker else None
    cpu0, t0 = os.times(), time.perf_counter()
    res = w.run_qos1(None) if args.qos else w.run_qos0(None)
    cpu1, t1 = os.times(), time.perf_counter()
    b1 = broker_ticks(args) if sample_broker else None
    common.close_all([c for c in conns if not c.closed])
    res["hist"] = w.hist if args.qos else w.ping_hist
    res["errors"] = dict(w.errors)
    res["cpu"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    res["run_wall"] = t1 - t0
    res["clients"] = [[c.client_id, c.index, c.sent if args.qos else c.sent // streams.L,
                       c.acked if args.qos else None] for c in conns]
    put_broker_cpu(res, b0, b1)
    return res


def broker_ticks(args):
    """A snapshot of --broker-pid's whole process tree (proctree), or None."""
    return proctree.snapshot(args.broker_pid) or None if args.broker_pid else None


def put_broker_cpu(part, b0, b1):
    """Put the broker's CPU between snapshots ``b0`` and ``b1`` into ``part``: in all
    (broker_cpu_s) and by process name (broker_cpu_by_process, seconds)."""
    if b0 is None or b1 is None:
        return
    part["broker_cpu_s"] = (proctree.total_ticks(b1) - proctree.total_ticks(b0)) / common.CLK_TCK
    part["broker_cpu_by_process"] = {
        name: round(t / common.CLK_TCK, 3) for name, t in proctree.ticks_by_name(b0, b1).items()}


def _child(args, indices, to_parent, from_parent):
    """Forked worker: connect, report ready, wait for go, run, report."""
    try:
        conns, ok, errors, secs = phase_connect(args, indices)
        os.write(to_parent, (json.dumps({"connected": len(ok), "errors": errors,
                                         "connect_s": secs}) + "\n").encode())
        with os.fdopen(from_parent) as f:
            f.readline()
        res = phase_run(args, conns, sample_broker=False)
        res["hist"] = list(res["hist"].items())
        data = (json.dumps(res) + "\n").encode()
        while data:
            data = data[os.write(to_parent, data):]
    except BaseException as e:  # report, never hang the parent
        os.write(to_parent, (json.dumps({"fatal": repr(e)}) + "\n").encode())
    finally:
        os._exit(0)


def run(args):
    soft, hard, ok_lim = common.raise_nofile(args.connections + 64)
    notes = []
    if not ok_lim:
        notes.append("RLIMIT_NOFILE soft=%d hard=%d < %d needed" % (soft, hard, args.connections + 64))
    procs = max(1, min(args.procs, args.connections))
    t_wall0 = time.monotonic()
    if procs == 1:
        conns, ok, cerrors, csecs = phase_connect(args, range(args.connections))
        connected = len(ok)
        parts = [phase_run(args, conns)] if ok else []
    else:
        kids = []
        for p in range(procs):
            r1, w1 = os.pipe()
            r2, w2 = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r1)
                os.close(w2)
                _child(args, range(p, args.connections, procs), w1, r2)
            os.close(w1)
            os.close(r2)
            kids.append((pid, os.fdopen(r1), w2))
        connected, cerrors, csecs = 0, collections.Counter(), 0.0
        for pid, rf, wf in kids:
            line = json.loads(rf.readline() or '{"fatal": "child died"}')
            if "fatal" in line:
                cerrors["child_fatal"] += 1
                notes.append(line["fatal"])
                continue
            connected += line["connected"]
            cerrors.update(line["errors"])
            csecs = max(csecs, line["connect_s"])
        b0 = broker_ticks(args)
        for pid, rf, wf in kids:
            try:
                os.write(wf, b"go\n")
                os.close(wf)
            except OSError:
                pass
        parts = []
        for pid, rf, wf in kids:
            line = rf.readline()
            os.waitpid(pid, 0)
            if not line:
                continue
            part = json.loads(line)
            if "fatal" in part:
                notes.append(part["fatal"])
                continue
            part["hist"] = {int(k): v for k, v in part["hist"]}
            parts.append(part)
        b1 = broker_ticks(args)
        if parts:
            put_broker_cpu(parts[0], b0, b1)
        cerrors = dict(cerrors)

    hist, errors = {}, collections.Counter()
    for k, v in cerrors.items():
        errors["connect:" + k if not k.startswith("connect") else k] += v
    sent = acked = 0
    cpu = 0.0
    starts, ends, clients, utils = [], [], [], []
    broker_cpu = by_process = None
    for part in parts:
        clients += part["clients"]
        if part["run_wall"] > 0:
            utils.append(part["cpu"] / part["run_wall"])
        if "broker_cpu_s" in part:
            broker_cpu = part["broker_cpu_s"]
            by_process = part.get("broker_cpu_by_process")
        for k, v in part["hist"].items():
            hist[k] = hist.get(k, 0) + v
        errors.update(part["errors"])
        sent += part["sent"]
        acked += part["acked"] or 0
        cpu += part["cpu"]
        starts.append(part["start"])
        ends.append(part["end"])
    elapsed = (max(ends) - min(starts)) if parts else 0.0
    done = acked if args.qos else sent
    out = {
        "tool": "loadgen",
        "host": args.host,
        "port": args.port,
        "qos": args.qos,
        "connections": args.connections,
        "connected": connected,
        "window": args.window if args.qos else None,
        "payload_size": args.payload_size,
        "duration": args.duration,
        "messages": args.messages,
        "procs": procs,
        "source_ips": args.source_ips,
        "sent": sent,
        "acked": acked if args.qos else None,
        "elapsed_s": round(elapsed, 4),
        "msgs_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": hist_percentiles(hist) if args.qos else None,
        "ping_rtt_ms": hist_percentiles(hist) if not args.qos else None,
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "connect_s": round(csecs, 3),
        "loadgen_cpu_s": round(cpu, 3),
        # cores used while publishing (user+sys / wall of the run loop), all processes,
        # and the busiest single process (one process cannot use more than one core)
        "loadgen_cores": round(cpu / max(p["run_wall"] for p in parts), 3) if utils else None,
        "loadgen_busiest": round(max(utils), 3) if utils else None,
        "run_wall_s": round(max(p["run_wall"] for p in parts), 4) if parts else None,
        "broker_pid": args.broker_pid,
        "broker_cpu_s": round(broker_cpu, 3) if broker_cpu is not None else None,
        "broker_cpu_by_process": by_process,
        "clients": sorted(clients, key=lambda c: c[1]),
        "wall_s": round(time.monotonic() - t_wall0, 3),
        "nofile": [soft, hard],
    }
    if notes:
        out["notes"] = notes
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--connections", "-c", type=int, default=10)
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--window", "-w", type=int, default=10,
                   help="max unacked QoS 1 publishes per connection (default 10)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--messages", "-n", type=int, default=None,
                   help="total publishes over all connections")
    g.add_argument("--duration", "-d", type=float, default=None,
                   help="seconds of publishing (default 5 when --messages is not given)")
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--rate", type=float, default=None,
                   help="QoS 1 with --duration: publishes a second per connection, paced "
                        "every 10 ms (the window still caps what is in flight); default: as "
                        "fast as the PUBACKs come back")
    p.add_argument("--topic", default="bench/loadgen")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--username-file", metavar="FILE",
                   help="connection i's username is line i (mod the lines), e.g. one token each")
    p.add_argument("--password-same", action="store_true",
                   help="with --username-file: each username as the password too")
    p.add_argument("--client-prefix", default="loadgen-%d" % os.getpid())
    p.add_argument("--keepalive", type=int, default=0, help="CONNECT keepalive seconds (0 = off)")
    p.add_argument("--source-ips", type=int, default=None,
                   help="spread connections over 127.0.0.1..127.0.0.N "
                        "(default: 1 per 250 connections, at most 50)")
    p.add_argument("--procs", type=int, default=1, help="forked load processes (default 1)")
    p.add_argument("--broker-pid", type=int, default=None,
                   help="report the CPU of this process and all its descendants while "
                        "publishing (broker_cpu_s), read from /proc")
    p.add_argument("--sndbuf", type=int, default=None,
                   help="SO_SNDBUF per socket (default: kernel's)")
    p.add_argument("--ping-every", type=int, default=500,
                   help="QoS 0: a PINGREQ after every N publishes (default 500)")
    p.add_argument("--max-pings", type=int, default=2,
                   help="QoS 0: unanswered PINGREQs allowed before writing pauses (default 2)")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=None,
                   help="seconds to wait for outstanding PUBACKs/PINGRESPs (default max(10, 2*duration))")
    p.add_argument("--max-time", type=float, default=None,
                   help="hard stop for the publish phase (default duration+drain+5, or 120 s)")
    a = p.parse_args(argv)
    if a.messages is None and a.duration is None:
        a.duration = 5.0
    if a.connections < 1 or a.window < 1 or a.window > 65535 // 4:
        p.error("--connections >= 1 and 1 <= --window <= 16383")
    if a.payload_size < common.TAG_LEN:
        p.error("--payload-size >= %d (each payload carries its connection and sequence "
                "number)" % common.TAG_LEN)
    if a.connections > 999999:
        p.error("--connections <= 999999 (six digits of connection index in each payload)")
    if a.rate is not None and (a.rate <= 0 or not a.qos or a.duration is None):
        p.error("--rate > 0 needs --qos 1 and --duration")
    if a.source_ips is None:
        a.source_ips = common.auto_source_ips(a.connections)
    if a.drain_timeout is None:
        a.drain_timeout = max(10.0, 2 * (a.duration or 0))
    if a.max_time is None:
        a.max_time = (a.duration + a.drain_timeout + 5) if a.duration else 120.0
    return a


def main(argv=None):
    args = parse_args(argv)
    out = run(args)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if out["connected"] else 1


if __name__ == "__main__":
    sys.exit(main())
