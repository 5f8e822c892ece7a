"""``AfterCloseCase``: a broker on a ``ManualStore`` with a subscriber to ``t/#``, and a
persistent client "dev" that drops (``drop_with``) and comes back (``back_with``)
while its messages are still being stored. Shared by the tests of what is routed
after a close, of QoS 2 across drops and of receive order across reconnects.
"""
from twisted.trial import unittest

from tests.support.broker import Harness, ManualStore, publishes


class AfterCloseCase(unittest.TestCase):
    """A message committed after its connection closed gets no ack, but it is in the
    database, so it reaches subscribers and the retained store (a persistent client's
    QoS 2 retransmission then only completes the flow: exactly once)."""

    def setUp(self):
        self.store = ManualStore()
        self.h = Harness(store=self.store)
        self.sub = self.h.subscriber("t/#", qos=2)

    def delivered(self):
        return [m.payload for m in publishes(self.sub.received())]

    def drop_with(self, *packets):
        """A persistent client "dev" sends ``packets``, then its connection drops."""
        c = self.h.client("dev", clean=False)
        c.send(*packets)
        c.lose()

    def back_with(self, *packets):
        """ "dev" connects again, persistent, and sends ``packets``."""
        again = self.h.client("dev", clean=False)
        again.send(*packets)
        return again
