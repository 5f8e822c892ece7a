"""What the master's TLS tests share: Twisted's test certificate, the limits a
PendingTLSConnect reads, and a client that speaks first."""
import os

import attrs
import twisted.test

from tests.support.channels import Recorder

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


@attrs.frozen
class ConnectLimits:
    """The ``broker`` settings a PendingTLSConnect reads, with a short idle_timeout."""

    max_connect_size: int = 1024
    max_packet_size: int = 65536
    idle_timeout: float = 0.5


class Greeter(Recorder):
    """A client that sends ``greeting`` as soon as it is connected (over TLS: as soon
    as its handshake has begun)."""

    def __init__(self, greeting):
        super().__init__()
        self.greeting = greeting

    def connectionMade(self):
        if self.greeting:
            self.transport.write(self.greeting)
