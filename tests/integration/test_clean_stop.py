"""SIGTERM under QoS 1 load: no acknowledged message is lost, and the stop is clean: what
the broker read was committed AND acknowledged (no row in SQLite that its client never
got a PUBACK for), the process ends as a clean twistd stop does, and nothing is logged as an error.

Run on the tree, the default (SIGTERM to the master alone, as systemd's KillMode=mixed
does; the master stops its workers, then the ingest child), and on the single process."""
import signal

from tests.integration.support.common import wait_for
from tests.integration.support.durability import DurabilityTestCase
from tests.integration.support.process import requires_mqttd

# twistd ends a SIGTERM'd run by re-raising the signal once it has shut down cleanly
# (systemd counts that a success); anything else is a failed stop.
CLEAN = (0, -signal.SIGTERM)


@requires_mqttd("the clean stop of the durable tier")
class CleanStopTests(DurabilityTestCase):
    webhook = dict(DurabilityTestCase.webhook, request_timeout="5.0")

    def test_sigterm_under_load_commits_and_acknowledges_what_was_read(self):
        self.start_appliance(proxied=False)
        pubs = self.publishers(20, "term-", window=10)
        self.wait_progress(pubs, 300)
        self.wait_flowing(pubs, 10)  # every client's window in use at the stop
        rc = self.broker.terminate_main(timeout=15.0)
        self.assertIn(rc, CLEAN, self.broker.tail())
        wait_for(lambda: all(p.done() for p in pubs), 5.0, message="publishers to see the stop")
        for pub in pubs:
            self.assertIsNone(pub.error, pub.error)
        rows, acked = self.assertAckedStoredOnce(pubs, exact=False)
        stored = {(client_id, bytes(payload)) for client_id, payload, _, _, _ in rows}
        unacked_rows = sorted(stored - set(acked))
        self.assertEqual(unacked_rows, [], f"{len(unacked_rows)} messages were committed but "
                         f"their PUBACK never reached the client\n{self.broker.tail(60)}")
        out = self.broker.output()
        for marker in ("Traceback (most recent call last)", "Unhandled Error"):
            self.assertNotIn(marker, out)


class OneProcessCleanStopTests(CleanStopTests):
    appliance = "[server]\nworkers = 0\n"


@requires_mqttd("the process tree's stop order")
class TreeStopOrderTests(DurabilityTestCase):
    appliance = "[server]\nworkers = 2\n"  # two named workers, whatever this host's cores

    def test_workers_stop_before_the_ingest_child(self):
        self.start_appliance(proxied=False)
        wait_for(lambda: self.broker.output().count("ready") >= 2, 10.0,
                 message="both workers ready", context=self.broker.tail)
        self.assertIn(self.broker.terminate_main(timeout=15.0), CLEAN)
        out = self.broker.output()
        ends = {name: out.find(f"{name} stopped") for name in
                ("mqttd-worker-1", "mqttd-worker-2", "mqttd-ingest")}
        self.assertTrue(all(at >= 0 for at in ends.values()), out[-3000:])
        self.assertLess(max(ends["mqttd-worker-1"], ends["mqttd-worker-2"]), ends["mqttd-ingest"])
