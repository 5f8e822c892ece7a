"""Ingest wire format throughput: encode_batch (broker side) and decode_batch (webhook).

Run: ``.venv/bin/python benchmarks/bench_wire.py`` from the repository root. Prints
messages per second (best of a few rounds, so a busy shared machine skews it less) for
batches of 10, 100 and 500 messages with 64-byte payloads, and the body size per
message, with the garbage collector tuned as in a running mqttd (mqttd.tap).

``--against REV`` also measures ``mqttd/ingest/wire.py`` as of a git revision (loaded
with ``git show``, nothing of it is kept) for a before/after comparison, e.g.
``--against f293309`` for the one-object-per-message format this replaced.
"""
import argparse
import gc
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mqttd.ingest import wire  # noqa: E402
from mqttd.store.sink import Message  # noqa: E402
from mqttd.tap import GC_THRESHOLDS  # noqa: E402

SIZES = (10, 100, 500)
PAYLOAD = bytes(range(64))
ROUNDS = 7
TARGET = 0.05  # seconds per timed round


def messages(n, start=0):
    """Like the broker's: a per-process key prefix and counter, ``time.time()``-like
    received_at (full double precision, the costly kind to print and parse)."""
    return [
        Message(f"5f0c9a1e2b3d4c5e-{start + i}", f"dev-{i % 37}", "acme",
                f"sensors/building-7/dev-{i % 37}/temp", PAYLOAD, 1, False,
                1767225600.123456 + i * 0.0000321)
        for i in range(n)
    ]


def best_rate(per_call, fn):
    """Messages/s of ``fn`` (handling ``per_call`` messages per call), best round."""
    calls = 1
    while True:  # size a round to about TARGET seconds
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - t0 >= TARGET / 4:
            break
        calls *= 2
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return per_call / best


def load_revision(rev):
    source = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:mqttd/ingest/wire.py"],
                            check=True, capture_output=True).stdout
    with tempfile.NamedTemporaryFile("wb", suffix=".py") as f:
        f.write(source)
        f.flush()
        spec = importlib.util.spec_from_file_location(f"wire_{rev}", f.name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def measure(module, n):
    batch = messages(n)
    body = module.encode_batch(batch)
    assert len(module.decode_batch(body)) == n
    encode = best_rate(n, lambda: module.encode_batch(batch))
    decode = best_rate(n, lambda: module.decode_batch(body))
    return encode, decode, len(body) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV",
                        help="also measure mqttd/ingest/wire.py at this git revision")
    args = parser.parse_args()
    # The collector settings of a running mqttd (mqttd.tap.tune_gc).
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    variants = [("columnar", wire)]
    if args.against:
        variants.insert(0, (args.against, load_revision(args.against)))
    print(f"{'format':>10} {'batch':>5} {'encode msg/s':>13} {'decode msg/s':>13} "
          f"{'enc+dec us/msg':>14} {'bytes/msg':>9}")
    results = {}
    for n in SIZES:
        for name, module in variants:
            encode, decode, size = measure(module, n)
            per_msg = 1e6 / encode + 1e6 / decode
            results[name, n] = per_msg
            print(f"{name:>10} {n:>5} {encode:>13,.0f} {decode:>13,.0f} {per_msg:>14.2f} "
                  f"{size:>9.1f}")
    if args.against:
        for n in SIZES:
            ratio = results[args.against, n] / results["columnar", n]
            print(f"batch {n}: encode+decode {ratio:.1f}x faster per message")


if __name__ == "__main__":
    main()
