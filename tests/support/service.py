"""A memory reactor for building the whole service tree in a unit test.

``MemoryReactorOnInterfaces`` keeps the interface each port was asked for, because the
ingest tier checks that its listener is on loopback; shared by the service and the
listen-backlog tests.
"""
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock


class _Port:
    def __init__(self, address):
        self.address = address

    def getHost(self):
        return self.address

    def stopListening(self):
        return defer.succeed(None)


class MemoryReactorOnInterfaces(MemoryReactorClock):
    """MemoryReactorClock whose TCP ports report the interface they were asked for
    (MemoryReactor's say 0.0.0.0, which the ingest tier refuses as not loopback)."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return _Port(IPv4Address("TCP", interface or "0.0.0.0", port))
