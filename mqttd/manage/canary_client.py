"""The canary's MQTT client: one connection to the appliance's own listener, as a device.

Why not paho or the test clients: the canary runs inside the master on its reactor,
and needs three packets (CONNECT, PUBLISH QoS 1, and reading CONNACK and PUBACK), which
mqttd's own codec encodes and parses (``Parser(server=False)`` reads what a server
sends). Anything else the broker sends is ignored; bytes that break the protocol close
the connection, and the canary connects again at its next check.

Where it connects (``target``): the first ``tcp:`` or ``unix:`` listener of
``server.listen`` at the address it is bound to (0.0.0.0 and :: as loopback), else the
first ``ssl:`` one over TLS without checking the certificate (it is our own).
"""
from twisted.internet import ssl
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (SSL4ClientEndpoint, TCP4ClientEndpoint,
                                        TCP6ClientEndpoint, UNIXClientEndpoint)
from twisted.internet.protocol import ClientFactory, Protocol

from mqttd.codec import Connack, Connect, Parser, ProtocolError, Puback, encode, encode_publish
from mqttd.listeners import endpoint_fields

__all__ = ["CanaryClient", "Refused", "client_factory", "target"]

_KEEP_ACKS = 64  # PUBACKs awaited at once (older checks' are forgotten)


class Refused(Exception):
    """The broker answered the CONNECT with a refusal (its CONNACK code)."""

    def __init__(self, code):
        super().__init__(f"CONNACK {code:#04x}")
        self.code = code


class CanaryClient(Protocol):
    """``ready`` fires with the client once CONNACK 0 came (a Refused or the
    connection's failure else); ``publish`` gives a Deferred of its PUBACK."""

    def __init__(self, client_id, username, password, keepalive):
        self._connect = Connect(client_id, clean_session=True, keepalive=keepalive,
                                username=username, password=password)
        self._parser = Parser(server=False)
        self._acks = {}  # packet id -> Deferred
        self.ready = Deferred()
        self.open = False
        self.accepted = False  # CONNACK 0 came

    def connectionMade(self):
        self.open = True
        self.transport.write(encode(self._connect))

    def dataReceived(self, data):
        try:
            packets = self._parser.feed(data)
        except ProtocolError:
            self.transport.abortConnection()
            return
        for packet in packets:
            if isinstance(packet, Connack) and not self.ready.called:
                if packet.return_code == 0:
                    self.accepted = True
                    self.ready.callback(self)
                else:
                    self.ready.errback(Refused(packet.return_code))
                    self.transport.loseConnection()
            elif isinstance(packet, Puback):
                d = self._acks.pop(packet.packet_id, None)
                if d is not None:
                    d.callback(None)

    def publish(self, packet_id, topic, payload):
        d = Deferred()
        self._acks.pop(packet_id, None)
        self._acks[packet_id] = d
        while len(self._acks) > _KEEP_ACKS:
            del self._acks[next(iter(self._acks))]
        self.transport.write(encode_publish(topic, payload, 1, False, False, packet_id))
        return d

    def close(self):
        if self.open:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.open = False
        if not self.ready.called:
            self.ready.errback(reason)
        self._acks.clear()  # never fired: their checks end at their interval


def _ipv6(host):
    return ":" in host


def target(reactor, listeners):
    """The client endpoint the canary connects to (see the module), or None if no
    listener is bound yet. ``listeners``: (endpoint string, address) pairs, the address
    an IAddress or a socket's getsockname()."""
    chosen = None
    for description, address in listeners:
        if address is None:
            continue
        kind = endpoint_fields(description)[0].lower()
        if kind != "ssl":
            chosen = (False, address)
            break
        if chosen is None:
            chosen = (True, address)
    if chosen is None:
        return None
    tls, address = chosen
    if isinstance(address, UNIXAddress):
        address = address.name
    if isinstance(address, (str, bytes)):
        return UNIXClientEndpoint(reactor, address)
    if isinstance(address, (IPv4Address, IPv6Address)):
        host, port = address.host, address.port
    else:
        host, port = address[0], address[1]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if tls:
        return SSL4ClientEndpoint(reactor, host, port, ssl.CertificateOptions())
    endpoint = TCP6ClientEndpoint if _ipv6(host) else TCP4ClientEndpoint
    return endpoint(reactor, host, port)


class _Factory(ClientFactory):
    noisy = False  # no "Starting factory" line at every check's connect

    def __init__(self, *arguments):
        self._arguments = arguments

    def buildProtocol(self, addr):
        protocol = CanaryClient(*self._arguments)
        protocol.factory = self
        return protocol


def client_factory(client_id, username, password, keepalive):
    """The factory of one canary connection (for ``target``'s endpoint)."""
    return _Factory(client_id, username, password, keepalive)
