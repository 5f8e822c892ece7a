"""The subscription window of the process tree, as clients see it: does a publish on
another worker reach a subscription made at about the same moment?

Run: ``.venv/bin/python benchmarks/bench_interest_window.py`` from the repository root
(options: ``--rounds`` per case, ``--cases``).

A subscription takes effect on the other workers one trip through the master after the
SUBSCRIBE is read (``mqttd.tree.interest``), and a worker forwards a message when it
routes it, after its commit. On the real tree (``server.workers = 2``, durable), S on
worker 1 subscribes to a fresh topic with QoS 1 and P on worker 2 publishes one QoS 1
message to it: ``after_suback`` once S has its SUBACK, ``with_subscribe`` right after
S's SUBSCRIBE was sent, ``before_<N>ms`` N ms before it. Prints, per case, how many of
the publishes reached S (within a second) and the SUBSCRIBE -> SUBACK p50.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mqttd.edge.balancer import Balancer  # noqa: E402
from tests.integration.support.process import BrokerProcess  # noqa: E402
from tests.integration.support.raw_client import (  # noqa: E402
    RawClient, publish_packet, subscribe_packet,
)

TREE = "[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"
PUBLISH, PUBACK, SUBACK, UNSUBACK = 3, 4, 9, 11


def homed_on(slot, prefix):
    """A client id whose home (the master's rendezvous choice) is worker ``slot``."""
    balancer = Balancer(range(1, 3))
    n = 0
    while balancer.home(f"{prefix}{n}") != slot:
        n += 1
    return f"{prefix}{n}"


def unsubscribe_packet(packet_id, topic):
    name = topic.encode()
    body = packet_id.to_bytes(2, "big") + len(name).to_bytes(2, "big") + name
    return bytes([0xA2, len(body)]) + body


def delivered(subscriber, topic, timeout=1.0):
    """Whether ``topic``'s PUBLISH reaches ``subscriber`` within ``timeout`` (acked)."""
    deadline = time.monotonic() + timeout
    while True:
        packet = subscriber.poll_packet(max(0.0, deadline - time.monotonic()))
        if packet is None:
            return False
        kind, _, body = packet
        if kind != PUBLISH:
            continue
        length = int.from_bytes(body[:2], "big")
        subscriber.send(b"\x40\x02" + body[2 + length:4 + length])  # its PUBACK
        if body[2:2 + length] == topic.encode():
            return True


def run_case(case, rounds, subscriber, publisher):
    """(publishes that reached the subscriber, SUBSCRIBE -> SUBACK p50 in ms)."""
    reached, latencies = 0, []
    for i in range(rounds):
        topic = f"window/{case}/{i}"
        if case.startswith("before_"):
            publisher.send(publish_packet(topic, b"x", qos=1, packet_id=1))
            time.sleep(float(case[len("before_"):-len("ms")]) / 1000)
        sent = time.monotonic()
        subscriber.send(subscribe_packet(1, [(topic, 1)]))
        if case == "with_subscribe":
            publisher.send(publish_packet(topic, b"x", qos=1, packet_id=1))
        assert subscriber.read_packet()[0] == SUBACK
        latencies.append(time.monotonic() - sent)
        if case == "after_suback":
            publisher.send(publish_packet(topic, b"x", qos=1, packet_id=1))
        assert publisher.read_packet()[0] == PUBACK
        reached += delivered(subscriber, topic)
        subscriber.send(unsubscribe_packet(2, topic))
        while subscriber.read_packet()[0] != UNSUBACK:
            pass
    latencies.sort()
    return reached, latencies[len(latencies) // 2] * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cases", default="after_suback,with_subscribe,before_1ms,before_3ms")
    args = parser.parse_args()
    broker = BrokerProcess(TREE)
    broker.start()
    try:
        subscriber = RawClient(broker.port)
        subscriber.connect(client_id=homed_on(1, "window-sub-"))
        publisher = RawClient(broker.port)
        publisher.connect(client_id=homed_on(2, "window-pub-"))
        for case in args.cases.split(","):
            reached, suback = run_case(case, args.rounds, subscriber, publisher)
            print(f"{case}: {reached}/{args.rounds} reached the subscriber; "
                  f"SUBSCRIBE -> SUBACK p50 {suback:.2f} ms", flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
