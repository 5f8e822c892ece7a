"""The durability tests' machinery: the appliance behind a ``faultproxy.FaultProxy``,
``Publisher`` (a raw MQTT client publishing unique payloads with a bounded window, in its
own thread), and ``DurabilityTestCase``, whose checks compare what was acknowledged with
the rows in SQLite. Shared by the webhook-fault, kill -9 and overload tests.
"""
import threading
import time
import traceback
from collections import Counter, deque

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support import faultproxy
from tests.integration.support.common import free_port, wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.process import BrokerError, BrokerProcess
from tests.integration.support.raw_client import (
    DISCONNECT,
    ConnectionClosed,
    PacketType,
    RawClient,
    packet,
    publish_packet,
)

DRAIN_TIMEOUT = 10.0
INGEST_SECRET = "durability-test-secret"


class Publisher:
    """One raw MQTT client publishing unique payloads, ``window`` unacknowledged at most.

    Runs in its own thread between ``start()`` and ``finish()``. ``sent`` maps each
    payload to the time.monotonic() just before its PUBLISH was written; ``acked`` maps
    the acknowledged ones (PUBACK for QoS 1, PUBREC for QoS 2) to (sent, acked) times.
    ``resend`` payloads go first (a device retransmitting after a reconnect); then new
    ones ``client_id/seq`` until ``limit`` messages were sent (None: until finish()).
    When the broker closes the connection, ``closed_at`` is set and the thread ends.
    """

    def __init__(self, port, client_id, qos=1, window=10, resend=(), limit=None, first_seq=0):
        self.port = port
        self.client_id = client_id
        self.topic = f"dur/{client_id}"
        self.qos = qos
        self.window = window
        self.limit = limit
        self.sent = {}
        self.acked = {}
        self.closed_at = None
        self.error = None
        self._resend = deque(resend)
        self._seq = first_seq
        self._inflight = {}  # packet id -> payload (QoS 2: until PUBCOMP)
        self._next_id = 0
        self._halt = threading.Event()
        self._drain_deadline = None
        self._thread = None
        self.raw = None

    # -- from the test thread

    def connect(self):
        self.raw = RawClient(self.port)
        code, _ = self.raw.connect(client_id=self.client_id, keepalive=60)
        if code != 0:
            raise AssertionError(f"{self.client_id}: CONNACK {code}")
        return self

    def start(self):
        if self.raw is None:
            self.connect()
        self._thread = threading.Thread(target=self._run, name=f"pub-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    def finish(self, drain=DRAIN_TIMEOUT):
        """Stop publishing, wait up to ``drain`` s for outstanding acks, DISCONNECT."""
        self._drain_deadline = time.monotonic() + drain
        self._halt.set()
        if self._thread is not None:
            self._thread.join(drain + 5)
            if self._thread.is_alive():
                raise AssertionError(f"{self.client_id}: publisher thread did not end")
        if self.error:
            raise AssertionError(f"{self.client_id}: publisher failed:\n{self.error}")

    def close(self):
        """Cleanup: never blocks for long."""
        self._drain_deadline = time.monotonic()
        self._halt.set()
        if self._thread is not None:
            self._thread.join(3)
        if self.raw is not None:
            self.raw.close()

    def unacked(self):
        return [payload for payload in self.sent if payload not in self.acked]

    def all_sent_acked(self):
        return self.limit is not None and len(self.sent) >= self.limit and not self.unacked()

    def done(self):
        return self._thread is not None and not self._thread.is_alive()

    # -- the thread

    def _run(self):
        try:
            self._loop()
        except ConnectionClosed:
            self.closed_at = self.raw.closed_at or time.monotonic()
        except Exception:
            self.error = traceback.format_exc()
        finally:
            self.raw.close()

    def _payload(self):
        if self._resend:
            return self._resend.popleft()
        if self.limit is not None and len(self.sent) >= self.limit:
            return None
        self._seq += 1
        return f"{self.client_id}/{self._seq}".encode()

    def _packet_id(self):
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight:
                return self._next_id

    def _loop(self):
        raw = self.raw
        while True:
            halted = self._halt.is_set()
            if halted and (not self._inflight or time.monotonic() >= self._drain_deadline):
                try:
                    raw.send(DISCONNECT)
                except (OSError, ConnectionClosed):
                    pass
                return
            while not halted and len(self._inflight) < self.window:
                payload = self._payload()
                if payload is None:
                    break
                packet_id = self._packet_id()
                self._inflight[packet_id] = payload
                self.sent[payload] = time.monotonic()
                raw.send(publish_packet(self.topic, payload, self.qos, packet_id=packet_id))
            got = raw.poll_packet(0.02)
            if got is None:
                continue
            ptype, _, body = got
            now = time.monotonic()
            packet_id = int.from_bytes(body[:2], "big")
            if ptype == PacketType.PUBACK and self.qos == 1:
                payload = self._inflight.pop(packet_id)
                self.acked[payload] = (self.sent[payload], now)
            elif ptype == PacketType.PUBREC and self.qos == 2:
                payload = self._inflight[packet_id]
                self.acked[payload] = (self.sent[payload], now)
                raw.send(packet(0x62, body[:2]))  # PUBREL
            elif ptype == PacketType.PUBCOMP and self.qos == 2:
                self._inflight.pop(packet_id)
            else:
                raise AssertionError(f"unexpected packet type {ptype} body {body!r}")


class DurabilityTestCase(SynchronousTestCase):
    """Helpers: the appliance behind a fault proxy, publishers, the database check."""

    #: [webhook] settings beyond url (TOML values as text).
    webhook = {
        "request_timeout": "0.5",
        "ack_timeout": "10.0",
        "retry_initial": "0.02",
        "retry_max": "0.2",
    }

    #: more TOML for the appliance (e.g. "[server]\nworkers = 2\n").
    appliance = ""

    def start_appliance(self, proxied=True, webhook=None):
        """Start mqttd (behind a FaultProxy if ``proxied``); sets self.broker / self.proxy."""
        settings = dict(self.webhook, **(webhook or {}))
        workdir = self.mktemp()
        last = None
        for _ in range(3):  # a port picked free may be taken before mqttd binds it
            self.proxy = None
            config = "[auth]\nallow_anonymous = true\n" + self.appliance
            if proxied:
                ingest_port = free_port()
                self.proxy = faultproxy.FaultProxy(ingest_port).start()
                self.addCleanup(self.proxy.close)
                # The broker posts to the proxy's URL, not its own tier's: it must be
                # given the tier's secret to send.
                config += (f'[ingest]\nlisten = "tcp:{ingest_port}:interface=127.0.0.1"\n'
                           f'secret = "{INGEST_SECRET}"\n')
                settings["url"] = f'"{self.proxy.url}"'
                settings["secret"] = f'"{INGEST_SECRET}"'
            config += "[webhook]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
            self.broker = BrokerProcess(config, workdir=workdir)
            try:
                self.broker.start()
            except BrokerError as e:
                last = e
                if self.proxy is not None:
                    self.proxy.close()
                continue
            self.addCleanup(self.broker.stop)
            return self.broker
        raise last

    def context(self):
        counts = f"proxy counts: {dict(self.proxy.counts)}\n" if getattr(self, "proxy", None) else ""
        return counts + self.broker.tail(60)

    def publishers(self, n, prefix, start=True, **kwargs):
        """``n`` connected Publishers (started unless ``start=False``), closed at cleanup."""
        pubs = []
        for i in range(n):
            pub = Publisher(self.broker.port, f"{prefix}{i}", **kwargs)
            self.addCleanup(pub.close)
            pub.connect()
            pubs.append(pub)
        if start:
            for pub in pubs:
                pub.start()
        return pubs

    def wait_progress(self, pubs, count, timeout=5.0):
        """Wait until ``count`` more acknowledgements arrived (the data path works)."""
        before = sum(len(p.acked) for p in pubs)
        wait_for(lambda: sum(len(p.acked) for p in pubs) >= before + count, timeout,
                 message=f"{count} more acknowledgements", context=self.context)

    def wait_flowing(self, pubs, each=1, timeout=5.0):
        """Wait until every one of ``pubs`` has had ``each`` acknowledgements: the load
        comes from all of them, not only from the first to connect."""
        wait_for(lambda: all(len(p.acked) >= each for p in pubs), timeout,
                 message=f"{each} acknowledgements for each of {len(pubs)} publishers",
                 context=self.context)

    def wait_acked_through(self, pubs, until, timeout=DRAIN_TIMEOUT):
        """Wait until every message ``pubs`` sent up to ``until`` (time.monotonic()) is
        acknowledged: what a fault held back has recovered."""
        def recovered():
            return all(payload in p.acked for p in pubs
                       for payload, sent in list(p.sent.items()) if sent <= until)
        wait_for(recovered, timeout, message="the messages held back by the fault acknowledged",
                 context=self.context)

    def finish_all(self, pubs, expect_all_acked=True):
        for pub in pubs:
            pub.finish()
        for pub in pubs:
            self.assertIsNone(pub.closed_at, f"{pub.client_id}: the broker closed the connection\n"
                              f"{self.context()}")
            if expect_all_acked:
                self.assertEqual(pub.unacked(), [], f"{pub.client_id}: unacknowledged after recovery "
                                 f"and {DRAIN_TIMEOUT}s\n{self.context()}")

    def assertNoAckDuringFault(self, pubs, start, end):
        """Nothing published in [start, end] was acknowledged before ``end``; some was published."""
        published = early = 0
        examples = []
        for pub in pubs:
            for payload, sent in pub.sent.items():
                if start <= sent <= end:
                    published += 1
                    acked = pub.acked.get(payload)
                    if acked is not None and acked[1] < end:
                        early += 1
                        examples.append((pub.client_id, payload, round(acked[1] - start, 3)))
        self.assertGreater(published, 0, "no message was published while the fault lasted")
        self.assertEqual(early, 0, f"{early} of {published} messages published during the fault were "
                         f"acknowledged before it ended (client, payload, s after start): {examples[:10]}"
                         f"\n{self.context()}")
        return published

    def assertAckedStoredOnce(self, pubs, exact=True):
        """Every acknowledged (client id, payload) is in SQLite exactly once.

        ``exact``: also no row that was not acknowledged, and no pair twice at all (no
        client retransmitted, so any second row came from a broker retry).
        """
        rows = stored_messages(self.broker.db_path)
        stored = Counter((client_id, bytes(payload)) for client_id, payload, _, _, _ in rows)
        acked = Counter()
        for pub in pubs:
            for payload in pub.acked:
                acked[(pub.client_id, payload)] += 1
        self.assertGreater(len(acked), 0, "nothing was acknowledged")
        missing = sorted(pair for pair in acked if stored[pair] == 0)
        doubled = sorted((pair, stored[pair]) for pair in acked if stored[pair] > 1)
        self.assertEqual(missing, [], f"{len(missing)} of {len(acked)} acknowledged messages are NOT in "
                         f"SQLite ({len(rows)} rows)\n{self.context()}")
        self.assertEqual(doubled, [], f"acknowledged messages stored more than once\n{self.context()}")
        if exact:
            extra = sorted(pair for pair in stored if pair not in acked)
            self.assertEqual(extra, [], "rows for messages never acknowledged")
            self.assertEqual(max(stored.values()), 1, "a (client id, payload) pair stored twice")
        return rows, acked

    def run_fault(self, mode, duration, clients=6, window=10, qos=1):
        """Load, ``mode`` for ``duration`` s, recovery; checks; returns (pubs, start, end)."""
        pubs = self.publishers(clients, f"{mode}{qos}-", qos=qos, window=window)
        self.wait_progress(pubs, 20)
        self.wait_flowing(pubs, window)
        start = self.proxy.set_mode(mode)
        # Fresh clients publish while the fault lasts (the others' windows may all be
        # full of messages caught by it, so that they publish nothing more meanwhile).
        pubs += self.publishers(2, f"{mode}{qos}-probe-", qos=qos, window=window)
        time.sleep(duration)
        end = time.monotonic()
        self.proxy.set_mode(faultproxy.PASS)
        self.wait_progress(pubs, 20, timeout=DRAIN_TIMEOUT)
        self.wait_acked_through(pubs, end)
        self.finish_all(pubs)
        self.assertNoAckDuringFault(pubs, start, end)
        self.assertTrue(self.broker.alive(), self.context())
        return pubs, start, end
