"""What loadgen.py writes: PUBLISH packets, pre-encoded in blocks, each payload unique.

Kept apart from the load loop so it can be tested without sockets (the durability
check depends on every payload naming its connection and sequence number).
"""
import common


class Streams:
    """Pre-encoded PUBLISH blocks, one payload per message, and the expected PUBACKs.

    Every payload starts with common.TAG: the connection's index and the message's
    sequence number on it (0, 1, 2, ...), so the durability check can match each row in
    mqttd.db to the one publish it came from. A connection's packets come from blocks
    of ``M`` (QoS 1; packet ids 1..M, M > window) or ``K`` (QoS 0) packets, each block
    one ``%`` format of a per-connection template (~80 ns per message): a window's
    publishes are still one slice and one send(). The loader never retransmits, so
    every (connection, sequence) is sent at most once.
    """

    def __init__(self, topic, payload_size, qos, window):
        if payload_size < common.TAG_LEN:
            raise ValueError("payload size %d < %d: every payload carries its connection "
                             "and sequence number" % (payload_size, common.TAG_LEN))
        self.qos = qos
        self.topic = topic
        self.pad = b"x" * (payload_size - common.TAG_LEN)
        self._block = None
        if qos:
            self.M = min(65535, max(2 * window, 256))
            self.L = len(common.publish_packet(topic, common.payload_tag(0, 0) + self.pad, 1, 1))
            acks = b"".join(common.puback_packet(i) for i in range(1, self.M + 1))
            self.ack = acks + acks  # any run of <= M PUBACKs is one contiguous slice
            self.per_block = self.M
        else:
            self.L = len(common.publish_packet(topic, common.payload_tag(0, 0) + self.pad, 0))
            self.per_block = max(1, 65536 // self.L)

    def _template(self, i):
        """Packet i of a block as a two-stage format: the connection's index (%06d)
        goes in first, then the sequence number (%%010d); literal '%' bytes escaped
        for both stages."""
        pkt = common.publish_packet(self.topic, common.payload_tag(0, 0) + self.pad,
                                    self.qos, i + 1 if self.qos else 0)
        index = len(pkt) - len(self.pad) - common.TAG_LEN + 2  # after b"lg"
        digits = index + 7  # 6 digits of index and a '.'
        esc = lambda b: b.replace(b"%", b"%%%%")  # noqa: E731
        return (esc(pkt[:index]) + b"%06d" + esc(pkt[index + 6:digits]) + b"%%010d"
                + esc(pkt[digits + 10:]))

    def attach(self, conn):
        """Give ``conn`` its block format and first block (sequence numbers from 0)."""
        if self._block is None:
            self._block = b"".join(self._template(i) for i in range(self.per_block))
        conn.fmt = self._block % ((conn.index,) * self.per_block)
        conn.block_base = -self.per_block
        conn.pub_pos = 0
        self._next_block(conn)

    def _next_block(self, conn):
        conn.block_base += self.per_block
        base = conn.block_base
        conn.pub = memoryview(conn.fmt % tuple(range(base, base + self.per_block)))

    def take(self, conn, n):
        """The next n QoS 1 publishes of ``conn`` (n <= M), moving its position on."""
        L, M = self.L, self.M
        pos = conn.pub_pos
        end = pos + n
        if end < M:
            conn.pub_pos = end
            return conn.pub[pos * L:end * L]
        head = conn.pub[pos * L:]
        self._next_block(conn)
        end -= M
        conn.pub_pos = end
        return bytes(head) + bytes(conn.pub[:end * L]) if end else head

    def qos0_block_done(self, conn):
        """QoS 0: ``conn`` wrote its whole block; the next one takes its place."""
        self._next_block(conn)
