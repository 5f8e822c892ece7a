"""How the overload pause (``_PAUSE_PRESSURE`` and its ``_backlog``) meets the rest of a
connection's life: closing, takeover, wills, the other reasons to stop reading.

Found by reviewing the merge of the protocol split, the overload pause and the memory
bounds; each test drives the real Broker and WebhookSink (tests/support/pressure.py)
on a task.Clock, connections on StringTransport.
"""
from twisted.trial import unittest

from mqttd.codec import Disconnect, Puback
from mqttd.codec.packets import Will
from tests.support.broker import pub
from tests.support.pressure import BrokerHarness


def wills(h):
    return h.broker.metrics.mqtt_wills_published


def paused_with_a_disconnect_behind():
    """A client with a will sends PUBLISH then DISCONNECT in one read; the PUBLISH
    fills the sink, so the DISCONNECT waits in the backlog."""
    h = BrokerHarness(max_pending=1, ack_timeout=10.0)
    a = h.client("a", will=Will("will/a", b"gone", 1))
    a.send(pub("t", b"1", qos=1, pid=1), Disconnect())
    return h, a


class DisconnectBehindAPauseTests(unittest.TestCase):
    def test_no_will_for_a_disconnect_read_while_paused_then_taken_over(self):
        """PUBLISH then DISCONNECT in one read, the PUBLISH fills the sink: the
        DISCONNECT waits in the backlog. The client, done, reconnects with its id: its
        old connection is taken over, and the will must not be published, for the client
        did disconnect [MQTT-3.1.2-10]."""
        h, a = paused_with_a_disconnect_behind()
        self.assertTrue(a.paused)
        self.assertFalse(a.closed)
        h.client("a")  # the takeover
        self.assertTrue(a.closed)
        self.assertEqual(wills(h), 0)

    def test_no_will_for_a_disconnect_read_while_paused_then_closed_at_ack_deadline(self):
        h, a = paused_with_a_disconnect_behind()
        self.assertTrue(a.paused)
        h.send()  # the webhook never answers
        h.clock.advance(10.0)
        self.assertTrue(a.closed)
        self.assertEqual(wills(h), 0)

    def test_the_disconnect_is_handled_once_resumed(self):
        h, a = paused_with_a_disconnect_behind()
        h.send()
        h.answer()
        self.assertEqual(a.received(), [Puback(1)])
        self.assertTrue(a.closed)
        a.lose()
        self.assertEqual(wills(h), 0)
