"""The broker's inbound hot path in one process: PUBLISH -> submit -> settle -> PUBACK.

Run: ``.venv/bin/python benchmarks/bench_inbound.py`` from the repository root (or
``--root DIR`` to measure another checkout's ``mqttd`` package, e.g. a ``git worktree``
of the revision before a change). Prints QoS 1 messages per second through the real
``MQTTServerProtocol`` and ``Broker`` (parser, inbound FIFO, acks, routing with no
subscriber), with a store that settles what was submitted in groups per connection, as
the webhook client does, so the FIFO, the grouped settle and the one-write acks are all
on the path. No sockets: the transports are in memory, so the figure holds still on a
shared machine better than a loopback run (best of a few rounds). ``--tree-worker``
installs a tree worker's cross-worker delivery (``mqttd.tree.crossing``) with nobody
subscribed on any other worker: what ingestion-only traffic pays for it. ``--trace on``
gives the broker the per-client trace (``mqttd.manage.tracer``, writing to a temp file)
with no client traced publish by publish: what the counters and the counting transport
cost each message; ``--trace all`` traces every client (a publish and an ack event each).
"""
import argparse
import gc
import os
import sys
import time

ROUNDS = 7


def _tracer(clock, everyone):
    """A Tracer writing to a temp file (removed at exit), tracing ``everyone`` or no one."""
    import atexit
    import tempfile

    from mqttd.manage.trace_file import TraceFile, open_trace_file
    from mqttd.manage.trace_window import RecentEvents
    from mqttd.manage.tracer import Tracer
    from mqttd.metrics import Metrics
    metrics = Metrics()
    path = tempfile.mktemp(prefix="bench-trace-", suffix=".jsonl")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    tracer = Tracer(clock, "bench", [TraceFile(clock, open_trace_file(path), metrics, path)],
                    RecentEvents(10_000, 16 << 20, 16384, metrics), [], metrics)
    if everyone:
        tracer.set_rules([("ip", "127.0.0.0/8")])
    return tracer


def build(root, connections, window, tree_worker=False, trace="off"):
    sys.path.insert(0, root)
    from twisted.internet import task
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    from zope.interface import implementer

    from mqttd.broker.auth import StaticAuthenticator
    from mqttd.broker.broker import Broker
    from mqttd.broker.protocol import MQTTServerFactory
    from mqttd.codec import Connect, Publish, encode
    from mqttd.config import AuthConfig, BrokerConfig
    from mqttd.store.sink import ISubmittingMessageSink
    from mqttd.tap import GC_THRESHOLDS

    @implementer(ISubmittingMessageSink)
    class GroupingStore:
        """Settles everything submitted since the last flush, one call per group of
        consecutive messages with the same ``notify`` (what the webhook client does)."""

        def __init__(self):
            self.submitted = []

        def store(self, message):
            raise NotImplementedError

        def submit(self, message, notify, token):
            self.submitted.append((notify, token))

        def flush(self):
            submitted, self.submitted = self.submitted, []
            group, tokens = None, None
            for notify, token in submitted:
                if notify is not group:
                    if tokens:
                        group(tokens, None)
                    group, tokens = notify, []
                tokens.append(token)
            if tokens:
                group(tokens, None)

    clock = task.Clock()
    store = GroupingStore()
    broker = Broker(clock, BrokerConfig(max_inflight=1000), store,
                    StaticAuthenticator(AuthConfig(allow_anonymous=True)))
    if tree_worker:
        from mqttd.tree.crossing import Crossing
        Crossing(broker, 1, broker.metrics, 8 << 20)  # no other worker wants anything
    if trace != "off":
        broker.tracer = _tracer(clock, trace == "all")
    factory = MQTTServerFactory(broker, clock)
    clients = []
    for n in range(connections):
        addr = IPv4Address("TCP", "127.0.0.1", 40000 + n)
        protocol = factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)
        protocol.dataReceived(encode(Connect(f"dev-{n}", True, 0)))
        transport.clear()
        burst = b"".join(
            encode(Publish(f"sensors/dev-{n}/temp", bytes(64), 1, False, False, pid))
            for pid in range(1, window + 1))
        clients.append((protocol, transport, burst))

    def one_round_trip():
        for protocol, _, burst in clients:
            protocol.dataReceived(burst)
        store.flush()
        for _, transport, _ in clients:
            transport.clear()

    gc.set_threshold(*GC_THRESHOLDS)
    return one_round_trip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   help="checkout whose mqttd package is measured")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--messages", type=int, default=200_000, help="per round")
    p.add_argument("--tree-worker", action="store_true",
                   help="as a tree worker whose peers want nothing (cross-worker delivery on)")
    p.add_argument("--trace", choices=("off", "on", "all"), default="off",
                   help="the per-client trace: off, on with no client traced, every client")
    args = p.parse_args()
    step = build(os.path.abspath(args.root), args.connections, args.window, args.tree_worker,
                 args.trace)
    trips = max(1, args.messages // (args.connections * args.window))
    step()
    best = best_cpu = float("inf")
    for _ in range(ROUNDS):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(trips):
            step()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)  # a shared machine's waits left out
    total = trips * args.connections * args.window
    import mqttd
    tree = ", tree worker" if args.tree_worker else ""
    tree += "" if args.trace == "off" else f", trace {args.trace}"
    print(f"{total / best:,.0f} QoS 1 msgs/s{tree} ({args.connections} connections, "
          f"window {args.window}, best of {ROUNDS} rounds of {total:,}; "
          f"{os.path.dirname(os.path.dirname(mqttd.__file__))}); "
          f"CPU {best_cpu / total * 1e6:.3f} us/msg")


if __name__ == "__main__":
    main()
