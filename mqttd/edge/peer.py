"""The client's real address for a connection the master relays (TLS): ``ReportedPeer``.

A worker reads a relayed client through a UNIX socketpair, whose ``getPeer()`` is an
empty UNIX address; the broker logs the peer, limits its log lines per peer address and
gives it to admission (the gate's per-address rules). The master sends the client's
TCP address with the hand-off, and the protocol gets a transport that reports it: a
``ProtocolWrapper`` between the two that passes everything through (writes, producers,
pauses, aborts) and answers ``getPeer()`` itself. One Python call more per read and per
write, on relayed connections only; the broker is unchanged.
"""
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

__all__ = ["ReportedPeer", "peer_address"]


def peer_address(peer):
    """The IAddress of a ``(host, port)`` peer as a TCP transport would report it."""
    host, port = peer
    kind = IPv6Address if ":" in host else IPv4Address
    return kind("TCP", host, port)


class _PeerReporting(ProtocolWrapper):
    def getPeer(self):
        return self.factory.peer


class ReportedPeer(WrappingFactory):
    """``factory``'s protocol, for one connection, with ``peer`` (an IAddress) as the
    address its transport reports."""

    protocol = _PeerReporting
    noisy = False

    def __init__(self, factory, peer):
        super().__init__(factory)
        self.peer = peer
