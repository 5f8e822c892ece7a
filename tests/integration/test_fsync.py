"""Every PUBACK follows the fsync of the commit that holds its message.

The kill -9 test (test_durability.py) cannot tell FULL from OFF: a killed process loses
nothing the kernel already has, synced or not. Only power loss would, and that cannot be
staged here. So this test watches the syscalls instead: the real ``twistd -n mqttd`` runs
under ``strace -f``, a raw client publishes QoS 1 messages one at a time (each waits for
its PUBACK, so each is its own commit), and the trace must show, inside every message's
[PUBLISH sent, PUBACK received] window, an fsync/fdatasync of the database's WAL that
began after the PUBLISH and ended before the PUBACK. With ``ingest.synchronous = "OFF"``
the same run must show fewer fsyncs than messages, or the check could not fail.

strace stamps each call with CLOCK_REALTIME (-ttt) at its entry and its duration (-T);
the test reads time.time(), the same clock. A traced thread resumes only after strace
has seen its syscall return, so a call's end in the trace precedes anything it did next.
"""
import os
import re
import shutil
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.process import ANONYMOUS, BrokerProcess, requires_mqttd
from tests.integration.support.raw_client import (
    DISCONNECT,
    PacketType,
    RawClient,
    publish_packet,
)

MESSAGES = 20
SYNCS = ("fsync", "fdatasync")

# 1234 1700000000.123456 fdatasync(7</path/mqttd.db-wal>) = 0 <0.000321>
# or, when another thread's call came in between, split in two lines:
# 1234 1700000000.123456 fdatasync(7</path/mqttd.db-wal> <unfinished ...>
# 1234 1700000000.123999 <... fdatasync resumed>) = 0 <0.000321>
_WHOLE = re.compile(r"^(\d+)\s+([\d.]+) (\w+)\(\d+<([^>]*)>\)\s+= (-?\d+).*<([\d.]+)>$")
_UNFINISHED = re.compile(r"^(\d+)\s+([\d.]+) (\w+)\(\d+<([^>]*)> <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(\d+)\s+[\d.]+ <\.\.\. (\w+) resumed>\)\s+= (-?\d+).*<([\d.]+)>$")


def successful_syncs(trace_path, path):
    """(start, end) realtime seconds of every fsync/fdatasync of ``path`` that returned 0."""
    syncs, pending = [], {}
    with open(trace_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if m := _WHOLE.match(line):
                _, start, name, target, rc, took = m.groups()
                if name in SYNCS and target == path and rc == "0":
                    syncs.append((float(start), float(start) + float(took)))
            elif m := _UNFINISHED.match(line):
                pid, start, name, target = m.groups()
                pending[pid] = (float(start), name, target)
            elif m := _RESUMED.match(line):
                pid, name, rc, took = m.groups()
                start, began, target = pending.pop(pid)
                if began == name and name in SYNCS and target == path and rc == "0":
                    syncs.append((start, start + float(took)))
    return sorted(syncs)


@requires_mqttd("mqttd's ingest tier")
class FsyncBeforePubackTests(SynchronousTestCase):
    def publish_traced(self, config):
        """Run mqttd under strace, publish MESSAGES QoS 1 messages one at a time, stop it.

        Returns (windows, syncs): each message's (PUBLISH sent, PUBACK received) realtime
        seconds, and the WAL's successful fsyncs from the trace.
        """
        strace = shutil.which("strace")
        self.assertIsNotNone(strace, "strace is not installed (scripts/setup.sh --test installs it)")
        workdir = os.path.abspath(self.mktemp())
        trace = os.path.join(workdir, "strace.txt")
        broker = BrokerProcess(config, workdir=workdir, wrap=[
            strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-ttt", "-T", "-y",
            "-e", f"trace={','.join(SYNCS)}", "-o", trace])
        broker.start()
        try:
            client = RawClient(broker.port)
            self.assertEqual(client.connect(client_id="fsync-probe")[0], 0)
            windows = []
            for seq in range(1, MESSAGES + 1):
                sent = time.time()
                client.send(publish_packet("fsync/probe", b"m%d" % seq, qos=1, packet_id=seq))
                ptype, _, body = client.read_packet()
                acked = time.time()
                self.assertEqual((ptype, body), (PacketType.PUBACK, seq.to_bytes(2, "big")))
                windows.append((sent, acked))
            client.send(DISCONNECT)
            client.close()
        finally:
            broker.stop()  # strace writes its last lines when the broker exits
        return windows, successful_syncs(trace, broker.db_path + "-wal")

    def test_each_puback_follows_an_fsync_of_its_commit(self):
        """The default (synchronous FULL): every window holds a WAL fsync of its own."""
        windows, syncs = self.publish_traced(ANONYMOUS)
        unsynced = [(k, round(acked - sent, 6)) for k, (sent, acked) in enumerate(windows, 1)
                    if not any(sent <= start and end <= acked for start, end in syncs)]
        self.assertEqual(unsynced, [], f"PUBACKs (message, s after its PUBLISH) with no WAL fsync "
                         f"between PUBLISH and PUBACK; {len(syncs)} WAL fsyncs in the trace")
        first = windows[0][0]
        for k, (_, acked) in enumerate(windows, 1):
            before = sum(1 for start, end in syncs if first <= start and end <= acked)
            self.assertGreaterEqual(before, k, f"PUBACK {k} came after only {before} WAL fsyncs")

    def test_synchronous_off_shows_fewer_fsyncs_than_pubacks(self):
        """The same run with synchronous OFF: the trace tells it apart (the check can fail)."""
        windows, syncs = self.publish_traced(ANONYMOUS + '[ingest]\nsynchronous = "OFF"\n')
        first, last = windows[0][0], windows[-1][1]
        during = [s for s in syncs if first <= s[0] and s[1] <= last]
        self.assertLess(len(during), MESSAGES, f"{len(during)} WAL fsyncs for {MESSAGES} PUBACKs")
