"""``RawClient`` speaks MQTT over a plain socket, with packet builders, for what a
well-behaved client library will not do (never send CONNECT, send garbage, die without
DISCONNECT).
"""
import socket
import struct
import time

from tests.integration.support.common import DEFAULT_TIMEOUT, HOST


class PacketType:
    CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
    SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def encode_remaining_length(n):
    out = bytearray()
    while True:
        digit = n % 128
        n //= 128
        if n:
            digit |= 0x80
        out.append(digit)
        if not n:
            return bytes(out)


def _utf8(s):
    data = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def packet(first_byte, body=b""):
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


def connect_packet(client_id="", keepalive=60, clean_session=True, will=None, username=None,
                   password=None, protocol_name="MQTT", level=4):
    """CONNECT bytes; ``will`` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean_session else 0
    payload = _utf8(client_id)
    if will is not None:
        topic, will_payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _utf8(topic) + _utf8(will_payload)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
    if password is not None:
        flags |= 0x40
        payload += _utf8(password)
    variable = _utf8(protocol_name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, variable + payload)


def publish_packet(topic, payload, qos=0, retain=False, packet_id=1, dup=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(first, body)


def subscribe_packet(packet_id, topics):
    body = struct.pack("!H", packet_id)
    for topic, qos in topics:
        body += _utf8(topic) + bytes([qos])
    return packet(0x82, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class ConnectionClosed(Exception):
    pass


class RawClient:
    """MQTT over a plain blocking socket, one packet at a time."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT, source=None):
        """``source``: the local address to connect from (any of 127.0.0.0/8 on Linux),
        for the broker's per-address limits."""
        self.sock = socket.create_connection(
            (HOST, port), timeout=timeout,
            source_address=None if source is None else (source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.closed_at = None
        self.opened_at = time.monotonic()

    def send(self, data):
        """Write ``data``; ConnectionClosed if the broker is gone (as ``_recv`` says it)."""
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed_at = time.monotonic()
            raise ConnectionClosed(str(e)) from None

    def _recv(self, deadline):
        """Read more bytes into the buffer; ConnectionClosed on EOF/reset; socket.timeout at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed_at = time.monotonic()
            raise ConnectionClosed(str(e)) from None
        if not data:
            self.closed_at = time.monotonic()
            raise ConnectionClosed("EOF")
        self.buffer += data

    def read_packet(self, timeout=DEFAULT_TIMEOUT):
        """Next packet as (packet_type, flags, body); ConnectionClosed; AssertionError on timeout."""
        packet = self.poll_packet(timeout)
        if packet is None:
            raise AssertionError(f"no packet within {timeout}s")
        return packet

    def _parse(self):
        buf = self.buffer
        if len(buf) < 2:
            return None
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        first = buf[0]
        body = buf[i:i + length]
        self.buffer = buf[i + length:]
        return first >> 4, first & 0x0F, body

    def connect(self, timeout=DEFAULT_TIMEOUT, **kwargs):
        """Send CONNECT, read CONNACK; returns (return_code, session_present)."""
        self.send(connect_packet(**kwargs))
        ptype, _, body = self.read_packet(timeout)
        if ptype != PacketType.CONNACK or len(body) != 2:
            raise AssertionError(f"expected CONNACK, got type {ptype} body {body!r}")
        return body[1], bool(body[0] & 1)

    def poll_packet(self, timeout):
        """Next packet as (packet_type, flags, body), or None if none within ``timeout``;
        ConnectionClosed when the broker closed the connection."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                parsed = self._parse()
                if parsed is not None:
                    return parsed
                self._recv(deadline)
        except socket.timeout:
            return None

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the broker to close the connection (discarding packets); returns when it did."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.buffer = b""
                self._recv(deadline)
        except ConnectionClosed:
            return self.closed_at
        except socket.timeout:
            raise AssertionError(f"broker did not close the connection within {timeout}s") from None

    def is_open(self, timeout=0.05):
        """True if the connection is still open after ``timeout`` (received bytes are kept)."""
        try:
            self._recv(time.monotonic() + timeout)
            return True
        except socket.timeout:
            return True
        except ConnectionClosed:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST (SO_LINGER 0): the rudest way for a client to die."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()
