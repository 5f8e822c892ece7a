"""The inbound queue's own surface: slotted entries, a queue only once a client publishes,
and no object of the broker reaching into another's private state.

The behaviour (acks after commit, order across reconnects, QoS 2 across drops, wills)
is tested through connections in tests/broker/test_ack_order.py, test_qos2_inbound.py,
test_reconnect_order.py and test_after_close.py, and, as a property, in
tests/broker/test_broker_interleavings.py.
"""
import ast
import gc
import os
import weakref

from twisted.trial import unittest

import mqttd.broker
from mqttd.broker.inbound_entry import InboundEntry
from mqttd.codec import Puback, Pubrec, encode_puback, encode_pubrec
from tests.support.broker import Client, Harness, ManualStore, pub
from tests.support.broker import SubmittingStore


class InboundEntryTests(unittest.TestCase):
    def test_the_stores_tokens_are_slotted_entries_with_named_fields(self):
        store = SubmittingStore()
        h = Harness(store=store)
        c = h.client("dev", clean=False)
        c.send(pub("t", b"1", qos=1, pid=3), pub("t", b"2", qos=2, pid=4))
        (first, second) = [token for _, _, token in store.calls]
        for entry in (first, second):
            self.assertIs(type(entry), InboundEntry)
            self.assertFalse(hasattr(entry, "__dict__"))
        self.assertEqual((first.ack, first.message.payload, first.settled, first.qos2_id),
                         (encode_puback(3), b"1", False, 0))
        self.assertEqual((second.ack, second.message.payload, second.qos2_id),
                         (encode_pubrec(4), b"2", 4))
        self.assertEqual(len(c.protocol.inbound), 2)
        store.settle([0, 1])
        self.assertEqual(c.received(), [Puback(3), Pubrec(4)])
        self.assertEqual(len(c.protocol.inbound), 0)


class InboundQueueTests(unittest.TestCase):
    def test_an_idle_connection_has_no_queue(self):
        """10,000 idle clients: the queue (and its FIFO) comes with the first PUBLISH."""
        h = Harness(store=ManualStore())
        c = h.client("idle")
        self.assertIsNone(c.protocol.inbound)
        c.send(pub("t", qos=1, pid=1))
        self.assertEqual(len(c.protocol.inbound), 1)

    def test_a_closed_connection_is_freed_without_the_cycle_collector(self):
        """Connection storms: each closed connection must go by reference counting, not
        wait as a protocol <-> queue cycle for a collector that runs rarely (tune_gc)."""
        gc.disable()
        self.addCleanup(gc.enable)
        h = Harness(store=SubmittingStore())
        c = h.client("dev")
        c.send(pub("t", qos=1, pid=1), pub("t", qos=1, pid=2))
        h.store.settle([0])
        c.lose()
        h.store.settle([1])  # after the close
        h.store.calls.clear()
        # What Twisted's transport does on close: it lets go of its protocol.
        c.transport.producer = c.transport.protocol = None
        closed = weakref.ref(c.protocol)
        del c
        self.assertIsNone(closed())

    def test_what_a_dropped_connection_still_routes_is_known_by_client_id(self):
        store = ManualStore()
        h = Harness(store=store)
        c = h.client("dev")
        c.send(pub("t", b"A", qos=1, pid=1))
        c.lose()
        self.assertEqual(len(h.broker.inbound), 1)
        again = Client(h)
        again.connect("dev")
        again.send(pub("t", b"B", qos=1, pid=2))
        store.succeed(1)
        self.assertEqual(again.received(), [Puback(2)])  # acked, routed after A
        self.assertEqual(len(h.broker.inbound), 1)
        store.succeed(0)
        self.assertEqual(len(h.broker.inbound), 0)


class PrivateStateTests(unittest.TestCase):
    def test_no_broker_module_reads_another_objects_private_fields(self):
        """``x._name`` only on ``self`` or on a class of the same module: a connection
        that read another connection's FIFO (``protocol._pending``) or reset its links
        (``session.protocol._route_after = None``) is what the inbound queue replaced."""
        folder = os.path.dirname(mqttd.broker.__file__)
        found = []
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read(), name)
            classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                        and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name)
                                 and node.value.id in classes | {"self"})):
                    found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        self.assertEqual(found, [])
