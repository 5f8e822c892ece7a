"""Hand-offs per second over mqttd/edge/handoff.py, master and worker in two processes.

Run: ``.venv/bin/python benchmarks/bench_handoff.py`` from the repository root (options:
``-n`` hand-offs a round, ``--rounds``, ``--burst`` hand-offs a reactor turn).

Each round connects ``n`` real TCP clients to a listener on 127.0.0.1 and accepts them
(untimed), spawns a worker that inherits one end of a socketpair, then hands every
accepted socket off with a 40-byte CONNECT as its preread, ``--burst`` per reactor turn as
an accept loop would, and closes each master fd on its ack. Timed: the first hand-off
to the last ack. CPU is each process's own (``time.process_time``): the master's over
that window, the worker's from its first received frame to its last adoption. Then every
client is polled: one that saw EOF is counted (it must be 0). A last phase times control
messages worker -> master (``closed`` with a conn id, JSON). Prints one JSON line per
round and a summary of medians.
"""
import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import connect_packet, raise_nofile  # noqa: E402

def worker_main(fd):
    from twisted.internet import protocol, reactor

    from mqttd.edge.adopt import adopt_into
    from mqttd.edge.handoff import WorkerChannel, open_channel

    adopted = []
    clock = {}

    class Idle(protocol.Protocol):
        def dataReceived(self, data):
            pass

    factory = protocol.Factory.forProtocol(Idle)
    factory.doStart()

    def adopt(fd, preread, conn_id):
        if not adopted:
            clock["cpu0"], clock["t0"] = time.process_time(), time.perf_counter()
        adopted.append(adopt_into(reactor, factory, fd, preread))
        if len(adopted) == clock["n"]:
            reactor.callLater(0, report)

    def report():
        channel.send("adopted", {"cpu": time.process_time() - clock["cpu0"],
                                 "wall": time.perf_counter() - clock["t0"]})

    def on_message(kind, payload):
        if kind == "expect":
            clock["n"] = payload["n"]
        elif kind == "closes":
            t0, cpu0 = time.perf_counter(), time.process_time()
            for conn_id in range(payload["n"]):
                channel.send("closed", {"conn_id": conn_id})
            channel.send("closes-sent", {"cpu": time.process_time() - cpu0,
                                         "wall": time.perf_counter() - t0})
        elif kind == "exit":
            reactor.stop()

    channel = open_channel(reactor, fd, WorkerChannel(adopt, on_message))
    channel.when_lost().addCallback(lambda _: reactor.running and reactor.stop())
    channel.send("ready", {})
    reactor.run()


def connect_clients(n):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    clients, servers = [], []
    for _ in range(n):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)
        clients.append(client)
        servers.append(server)
    listener.close()
    return clients, servers


def count_eofs(clients):
    poller = select.poll()
    by_fd = {c.fileno(): c for c in clients}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLRDHUP)
    return sum(1 for fd, _ in poller.poll(0) if by_fd[fd].recv(1, socket.MSG_PEEK) == b"")


def spawn_worker():
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    args = [sys.executable, os.path.abspath(__file__), "--worker", str(worker_end.fileno())]
    child = subprocess.Popen(args, pass_fds=(worker_end.fileno(),))
    worker_end.close()
    return master_end, child


def run_round(reactor, n, burst, messages):
    from twisted.internet import defer, task

    from mqttd.edge.handoff import MasterChannel, open_channel

    clients, servers = connect_clients(n)
    master_end, child = spawn_worker()
    inbox = {}
    waiting = {}

    def on_message(kind, payload):
        if kind == "closed":
            inbox["closed"] = inbox.get("closed", 0) + 1
            if inbox["closed"] == messages:
                waiting.pop("all-closed").callback(None)
            return
        inbox[kind] = payload
        if kind in waiting:
            waiting.pop(kind).callback(payload)

    def expect(kind):
        waiting[kind] = defer.Deferred()
        return waiting[kind]

    ready = expect("ready")
    channel = open_channel(reactor, master_end,
                           MasterChannel(on_message, max_queued=n + 1))
    channel.when_lost().addCallback(  # a worker that dies fails the round, not hangs it
        lambda lost: [waiting.pop(k).errback(lost) for k in list(waiting)])
    yield ready
    channel.send("expect", {"n": n})
    preread = connect_packet("bench-client-0000000000")[:40]
    adopted_report = expect("adopted")
    acks = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, n, burst):
        for conn_id in range(start, min(n, start + burst)):
            sock = servers[conn_id]
            d = channel.hand_off(sock.fileno(), preread, conn_id)
            d.addBoth(lambda result, sock=sock: (sock.close(), result)[1])
            acks.append(d)
        yield task.deferLater(reactor, 0, lambda: None)
    results = yield defer.gatherResults(acks)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert results == list(range(n)), "acks out of order or missing"
    worker = yield adopted_report
    eofs = count_eofs(clients)

    closes_report, all_closed = expect("closes-sent"), expect("all-closed")
    t0, cpu0 = time.perf_counter(), time.process_time()
    channel.send("closes", {"n": messages})
    sent = yield closes_report
    yield all_closed
    msg_wall, msg_cpu = time.perf_counter() - t0, time.process_time() - cpu0

    channel.send("exit", {})
    yield channel.when_lost()
    child.wait()
    for client in clients:
        client.close()
    return {
        "n": n, "burst": burst,
        "handoffs_per_s": round(n / wall), "master_cpu_us": round(cpu / n * 1e6, 1),
        "worker_cpu_us": round(worker["cpu"] / n * 1e6, 1), "client_eofs": eofs,
        "messages_per_s": round(messages / msg_wall),
        "message_cpu_us_worker": round(sent["cpu"] / messages * 1e6, 2),
        "message_cpu_us_master": round(msg_cpu / messages * 1e6, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # its channel's fd
    args = parser.parse_args()
    if args.worker is not None:
        return worker_main(args.worker)
    raise_nofile(3 * args.n + 1000)

    from twisted.internet import defer, reactor
    rows = []

    @defer.inlineCallbacks
    def rounds():
        try:
            for _ in range(args.rounds):
                row = yield defer.inlineCallbacks(run_round)(
                    reactor, args.n, args.burst, args.messages)
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(rounds)
    reactor.run()
    if rows:
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))
                and k not in ("n", "burst", "client_eofs")]
        summary = {k: statistics.median(r[k] for r in rows) for k in keys}
        summary["client_eofs"] = sum(r["client_eofs"] for r in rows)
        print("median of", len(rows), "rounds:", json.dumps(summary))


if __name__ == "__main__":
    main()
