"""Codec throughput on the broker's hot path: QoS 1 PUBLISH in, PUBLISH/PUBACK out.

Run: ``.venv/bin/python benchmarks/bench_codec.py`` from the repository root. Prints
packets per second (best of a few rounds, so a busy shared machine skews it less).
The stream is 10k coalesced QoS 1 PUBLISH (30-byte topic, 64-byte payload) after one
CONNECT, parsed server-side exactly as a worker would, both as one chunk and in
64 KiB reads (TCP-sized, so packets straddle chunk boundaries).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mqttd.codec import Connect, Parser, encode, encode_puback, encode_publish  # noqa: E402

N = 10_000
ROUNDS = 5
TOPIC = "sensors/building-7/floor3/t042"
PAYLOAD = bytes(range(64))
assert len(TOPIC) == 30


def best_rate(count, fn):
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return count / best


def main():
    connect = encode(Connect("bench-client"))
    stream = connect + b"".join(
        encode_publish(TOPIC, PAYLOAD, 1, False, False, i % 65535 + 1) for i in range(N))
    reads = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]

    def parse_whole():
        assert len(Parser().feed(stream)) == N + 1

    def parse_reads():
        parser = Parser()
        got = 0
        for chunk in reads:
            got += len(parser.feed(chunk))
        assert got == N + 1

    topic_bytes = TOPIC.encode()

    def encode_str():
        for i in range(1, N + 1):
            encode_publish(TOPIC, PAYLOAD, 1, False, False, i)

    def encode_bytes():
        for i in range(1, N + 1):
            encode_publish(topic_bytes, PAYLOAD, 1, False, False, i)

    def puback():
        for i in range(1, N + 1):
            encode_puback(i)

    print(f"parse {N} QoS1 PUBLISH, one chunk:    {best_rate(N, parse_whole):>12,.0f} packets/s")
    print(f"parse {N} QoS1 PUBLISH, 64 KiB reads: {best_rate(N, parse_reads):>12,.0f} packets/s")
    print(f"encode_publish (str topic):   {best_rate(N, encode_str):>12,.0f} packets/s")
    print(f"encode_publish (bytes topic): {best_rate(N, encode_bytes):>12,.0f} packets/s")
    print(f"encode_puback:                {best_rate(N, puback):>12,.0f} packets/s")


if __name__ == "__main__":
    main()
