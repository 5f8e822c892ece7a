"""The master binds its raw listeners from twistd's endpoint strings, or says which key is wrong."""
import os
import socket
import tempfile

from twisted.trial import unittest

from mqttd.edge.sockets import bind_listener
from mqttd.errors import ConfigError


class BindTests(unittest.TestCase):
    def bound(self, description):
        sock = bind_listener("server.listen[0]", description)
        self.addCleanup(sock.close)
        return sock

    def test_tcp_with_interface_and_backlog(self):
        sock = self.bound("tcp:0:interface=127.0.0.1:backlog=77")
        self.assertEqual(sock.family, socket.AF_INET)
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")
        self.assertFalse(sock.getblocking())
        socket.create_connection(sock.getsockname()).close()  # it listens

    def test_tcp6(self):
        sock = self.bound("tcp6:0:interface=\\:\\:1")
        self.assertEqual(sock.family, socket.AF_INET6)
        self.assertEqual(sock.getsockname()[0], "::1")

    def test_named_port(self):
        sock = self.bound("tcp:port=0:interface=127.0.0.1")
        self.assertNotEqual(sock.getsockname()[1], 0)

    def test_unix_replaces_a_stale_socket_and_sets_mode(self):
        path = os.path.join(tempfile.mkdtemp(), "m.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        sock = self.bound(f"unix:{path}:mode=600")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(sock.family, socket.AF_UNIX)

    def test_unknown_kind_names_the_key(self):
        with self.assertRaises(ConfigError) as e:
            bind_listener("server.listen[1]", "systemd:domain=INET:index=0")
        self.assertIn("server.listen[1]", str(e.exception))

    def test_bad_arguments(self):
        for description, words in [("tcp:x", "port must be an integer"),
                                   ("tcp:0:nonsense=1", "unknown endpoint argument"),
                                   ("tcp:0:backlog=0", "backlog must be"),
                                   ("tcp:99999", "port must be 0..65535"),
                                   ("unix:/tmp/a:mode=9z", "mode must be octal")]:
            with self.assertRaises(ConfigError, msg=description) as e:
                bind_listener("server.listen[0]", description)
            self.assertIn(words, str(e.exception))

    def test_port_in_use_is_one_line(self):
        taken = self.bound("tcp:0:interface=127.0.0.1")
        port = taken.getsockname()[1]
        with self.assertRaises(SystemExit) as e:
            bind_listener("server.listen[0]", f"tcp:{port}:interface=127.0.0.1")
        self.assertIn("server.listen[0]: cannot listen", str(e.exception))

    def test_a_socket_that_cannot_bind_is_closed(self):
        taken = self.bound("tcp:0:interface=127.0.0.1")
        port = taken.getsockname()[1]
        missing = os.path.join(tempfile.mkdtemp(), "no-such-dir", "mqttd.sock")
        before = len(os.listdir("/proc/self/fd"))
        errors = []  # kept: their tracebacks hold the sockets, so only close() frees them
        for description in (f"tcp:{port}:interface=127.0.0.1", f"unix:{missing}"):
            with self.assertRaises(SystemExit) as caught:
                bind_listener("server.listen[0]", description)
            errors.append(caught.exception)
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)
