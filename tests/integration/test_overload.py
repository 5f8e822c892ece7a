"""Overload pauses publishers instead of closing them, with the real twistd (point 7).

The ingest webhook stalls (``faultproxy`` HANG) while many raw publishers keep a window
of QoS 1 messages in flight, more than ``webhook.max_pending`` in all. The broker must
stop reading from them rather than refuse their publishes (which closed every one of
them: a reconnect storm under overload), read them again once the webhook is back, and
close a client only at its ack deadline. Every acknowledged message must be a row.
"""
import time

from tests.integration.support import faultproxy
from tests.integration.support.common import wait_for
from tests.integration.support.durability import DRAIN_TIMEOUT, DurabilityTestCase
from tests.integration.support.process import requires_mqttd

MAX_PENDING = 100
STALL = 3.0  # seconds the webhook hangs: the stall the clients wait out


@requires_mqttd("the durable ingest tier")
class OverloadTests(DurabilityTestCase):
    def overload(self, clients, window, ack_timeout, per_worker=False):
        """Start the appliance (max_pending 100), load it, hang the webhook; returns
        (publishers, when the hang began). ``per_worker``: ``clients`` for each worker."""
        self.start_appliance(webhook={"max_pending": str(MAX_PENDING),
                                      "ack_timeout": str(ack_timeout)})
        if per_worker:
            clients *= max(1, self.broker.workers)
        pubs = self.publishers(clients, "over-", window=window)
        self.wait_progress(pubs, 50)
        start = self.proxy.set_mode(faultproxy.HANG)
        return pubs, start

    def test_publishers_wait_out_a_stall_instead_of_being_closed(self):
        """16 clients x window 10 = 160 in flight > 100 per broker: paused for 3 s, none
        closed. webhook.max_pending bounds each broker process, and in the tree (the
        default) the clients spread over the workers by client id: 16 per worker puts
        16 or more on one of them (pigeonhole), whichever way the ids hash."""
        pubs, start = self.overload(clients=16, window=10, ack_timeout=10.0, per_worker=True)
        wait_for(lambda: "overload:" in self.broker.output(), STALL,  # it reached max_pending
                 message="the stall to reach webhook.max_pending", context=self.context)
        time.sleep(max(0.0, start + STALL - time.monotonic()))  # what they must wait out
        end = time.monotonic()
        self.assertTrue(all(p.closed_at is None for p in pubs),
                        f"closed during the stall: {[p.client_id for p in pubs if p.closed_at]}"
                        f"\n{self.context()}")
        self.proxy.set_mode(faultproxy.PASS)
        self.wait_progress(pubs, 300, timeout=DRAIN_TIMEOUT)  # resumed, well past 100 again
        self.finish_all(pubs)  # nobody was closed; every message acknowledged
        self.assertNoAckDuringFault(pubs, start, end)
        self.assertNotIn("store failed", self.broker.output())
        self.assertAckedStoredOnce(pubs)
        self.assertTrue(self.broker.alive(), self.context())

    def test_a_paused_publisher_is_closed_at_its_ack_deadline_not_before(self):
        ack_timeout = 2.0
        pubs, start = self.overload(clients=16, window=10, ack_timeout=ack_timeout)
        # Fresh clients publish while the stall lasts: the others' windows may all have
        # been full when it began, and then none of them publishes during it.
        pubs += self.publishers(2, "during-", window=10)
        wait_for(lambda: all(p.done() for p in pubs), ack_timeout + 5.0,
                 message="the broker to close every publisher", context=self.context)
        for pub in pubs:
            self.assertIsNone(pub.error, pub.error)
            self.assertIsNotNone(pub.closed_at, f"{pub.client_id} not closed\n{self.context()}")
            waited = pub.closed_at - min(pub.sent[x] for x in pub.unacked())
            self.assertGreaterEqual(waited, ack_timeout - 0.1,
                                    f"{pub.client_id} closed {waited:.2f}s after its oldest "
                                    f"unacknowledged PUBLISH\n{self.context()}")
        self.assertNoAckDuringFault(pubs, start, time.monotonic())
        self.assertIn("overload:", self.broker.output())  # the stall did reach max_pending
        self.proxy.set_mode(faultproxy.PASS)
        # Messages still waiting for their own deadlines may be committed unacknowledged.
        self.assertAckedStoredOnce(pubs, exact=False)
        self.assertTrue(self.broker.alive(), self.context())
