"""``BrokerTestCase``: a fresh broker process per test, and clients bound to it."""
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.common import DEFAULT_TIMEOUT
from tests.integration.support.paho_client import PahoClient
from tests.integration.support.process import ANONYMOUS, start_broker
from tests.integration.support.raw_client import ConnectionClosed, RawClient


class BrokerTestCase(SynchronousTestCase):
    """A fresh broker per test (``config`` is its TOML), and helpers bound to it."""

    config = ANONYMOUS

    def setUp(self):
        self.broker = start_broker(self, self.config)
        self.port = self.broker.port
        self._ids = 0

    def context(self):
        return self.broker.tail()

    def new_id(self, prefix="c"):
        self._ids += 1
        return f"{prefix}{self._ids}-{os.getpid() % 10000}"

    def client(self, client_id=None, connect=True, **kwargs):
        """A PahoClient on this broker (connected unless ``connect=False``), closed at cleanup."""
        c = PahoClient(self.port, client_id=client_id if client_id is not None else self.new_id(),
                       context=self.context, **kwargs)
        self.addCleanup(c.close)
        if connect:
            c.connect()
        return c

    def raw(self, timeout=DEFAULT_TIMEOUT, source=None):
        """A RawClient on this broker (from local address ``source``), closed at cleanup."""
        r = RawClient(self.port, timeout=timeout, source=source)
        self.addCleanup(r.close)
        return r

    def assertRoundTrip(self, topic="probe/rt", qos=1):
        """A fresh subscriber and publisher exchange one message: the broker still works."""
        sub = self.client()
        sub.subscribe(topic, qos)
        pub = self.client()
        payload = os.urandom(8)
        pub.publish(topic, payload, qos)
        message = sub.get_message()
        self.assertEqual((message.topic, message.payload), (topic, payload))

    def refused_at_accept(self, source, timeout=3.0):
        """Whether a connection from ``source`` is closed without a CONNACK. The door
        closes (the tree's master resets) a refused socket at accept: the client may
        meet that in connect() already, or at its first read."""
        try:
            raw = self.raw(source=source)
            raw.connect(client_id=self.new_id(source), timeout=timeout)
        except (ConnectionClosed, ConnectionResetError):
            return True
        return False
