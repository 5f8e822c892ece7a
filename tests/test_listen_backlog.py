"""MQTT listeners accept with a backlog of at least 1024 unless their string sets one.

Twisted's endpoints default to 50: a reconnect burst of 3,000 clients overflowed it and
their connects took seconds to be retried. Checked where the listen() call lands, on a
MemoryReactor, for every endpoint type that takes a backlog.
"""
import os

import twisted.test
from twisted.trial import unittest

from mqttd.config import parse_config
from mqttd.listeners import with_backlog
from mqttd.service import build_service
from tests.support.service import MemoryReactorOnInterfaces

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


class ListenBacklogTests(unittest.TestCase):
    def listen(self, *descriptions):
        reactor = MemoryReactorOnInterfaces()
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp(),
                                          "listen": list(descriptions)}})
        root = build_service(config, reactor)
        root.privilegedStartService()
        return reactor

    def test_every_listener_kind_gets_at_least_1024(self):
        sock = os.path.abspath(self.mktemp())
        reactor = self.listen("tcp:1883:interface=127.0.0.1", f"ssl:8883:privateKey={PEM}",
                              f"unix:{sock}")
        tcp = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
        self.assertGreaterEqual(tcp[1883], 1024)
        ((port, _, _, backlog, _),) = reactor.sslServers
        self.assertEqual(port, 8883)
        self.assertGreaterEqual(backlog, 1024)
        ((address, _, backlog, _, _),) = reactor.unixServers
        self.assertEqual(address, sock)
        self.assertGreaterEqual(backlog, 1024)

    def test_added_only_where_it_is_taken_and_not_set(self):
        self.assertEqual(with_backlog("tcp:1883:backlog=4000:interface=127.0.0.1"),
                         "tcp:1883:backlog=4000:interface=127.0.0.1")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0"),
                         "systemd:domain=INET:index=0")
        self.assertEqual(with_backlog("TCP6:1883"), "TCP6:1883:backlog=1024")
        self.assertEqual(with_backlog(r"unix:/run/a\:backlog=1"),
                         r"unix:/run/a\:backlog=1:backlog=1024")  # an escaped colon
