"""Why each process writes its own trace lines: the two ways measured, per line.

Run: ``.venv/bin/python benchmarks/bench_trace_paths.py``. (a) a worker appends its
lines to the trace file itself (``mqttd.manage.trace_file.TraceFile``: O_APPEND, the
lines of a turn in one write); (b) it sends each event to the master as a channel
MESSAGE (``mqttd.edge.handoff_wire``: JSON framing), and the master reads the frames,
decodes them and writes the lines. CPU per line, best of 5 rounds of 20,000 ack events;
(b) leaves out the two socket copies, so it is a lower bound of that way's cost.
"""
import json
import os
import sys
import tempfile
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402

from mqttd.edge.handoff_wire import FrameReader, decode, encode_message  # noqa: E402
from mqttd.manage.trace_file import TraceFile, open_trace_file  # noqa: E402
from mqttd.metrics import Metrics  # noqa: E402

RECORD = {"ts": 1796657954.269629, "event": "ack", "process": "mqttd-worker-1",
          "client_id": "dev1", "peer": "127.0.0.1:37516", "username": None, "account": None,
          "ack": "puback", "packet_id": 1, "key": "2153569a08a49b7e-000000000000-c1d9b775",
          "commit_latency_ms": 14.677}
EVENTS, BATCH = 20_000, 100


def per_line(fn):
    return min(timeit.repeat(fn, number=EVENTS // BATCH, repeat=5)) / EVENTS * 1e6


def main():
    line = json.dumps(RECORD, separators=(",", ":")) + "\n"
    path = tempfile.mktemp(prefix="bench-trace-paths-")
    writer = TraceFile(Clock(), open_trace_file(path), Metrics(), path)
    try:
        def local():
            for _ in range(BATCH):
                writer({"trace_line": line})
            writer.flush()

        def worker_side():
            return b"".join(encode_message("trace", RECORD) for _ in range(BATCH))

        frames, reader = worker_side(), FrameReader()

        def master_side():
            for frame_type, body in reader.feed(frames):
                payload = decode(frame_type, body).payload
                writer({"trace_line": json.dumps(payload, separators=(",", ":")) + "\n"})
            writer.flush()

        own, sent, relayed = per_line(local), per_line(worker_side), per_line(master_side)
    finally:
        writer.close()
        os.unlink(path)
    print(f"(a) the worker appends: {own:.2f} us/line; (b) via the master: {sent:.2f} us in "
          f"the worker + {relayed:.2f} us in the master per line (socket copies not counted)")


if __name__ == "__main__":
    main()
