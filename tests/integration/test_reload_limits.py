"""SIGHUP reloads ``limits.allowlist`` and ``limits.max_conn_rate_per_ip`` on the real
tree (server.workers = 2: the master's door checks both at accept), one address of
127.0.0.x at a time: an address added to the allowlist gets in past the rate and the
cap, a raised rate lets a throttled address in again (under its cap still), the other
addresses keep their limits, and no connection open across a reload is dropped."""
from tests.integration.support.metrics import scrape, series, wait_for_series
from tests.integration.support.raw_client import PINGREQ, PacketType
from tests.integration.support.reload import hup, rewrite_config
from tests.integration.support.testcase import BrokerTestCase

RELOADED = "SIGHUP: configuration reloaded; applied: "
RATE = "limits.max_conn_rate_per_ip"
CAP = "limits.max_conn_per_ip"
LISTED, THROTTLED, FRESH = "127.0.0.61", "127.0.0.62", "127.0.0.63"


def config(allowlist=(), rate=0.01, burst=2, cap=3):
    """The tree, anonymous, with loopback limited like any address (``allowlist``
    only); the default rate gives one connect back each 100 s: none during the test."""
    entries = ", ".join(f'"{address}"' for address in allowlist)
    return ("[auth]\nallow_anonymous = true\n[server]\nworkers = 2\n"
            f"[limits]\nallowlist = [{entries}]\nmax_conn_per_ip = {cap}\n"
            f"max_conn_rate_per_ip = {rate}\nconn_rate_burst = {burst}\n")


class TreeReloadLimitsTests(BrokerTestCase):
    config = config()

    def connected(self, source, n):
        """``n`` connections from ``source``, each CONNACKed 0 (kept open)."""
        clients = []
        for _ in range(n):
            raw = self.raw(source=source)
            self.assertEqual(raw.connect(client_id=self.new_id(source))[0], 0,
                             f"a connection from {source} was not accepted")
            clients.append(raw)
        return clients

    def refused(self, source, limit):
        """A connection from ``source`` is closed at accept, counted under ``limit``."""
        key = series("edge_refused_total", limit=limit)
        before = scrape(self.broker.metrics_url).get(key, 0)
        self.assertTrue(self.refused_at_accept(source), f"a connection from {source} was admitted")
        wait_for_series(self.broker.metrics_url, lambda s: s.get(key, 0) == before + 1)

    def reload(self, text, applied):
        rewrite_config(self.broker, text)
        hup(self.broker, RELOADED + applied)

    def assertAllAlive(self, clients):
        """Every one of ``clients`` is open and answered by its worker."""
        for raw in clients:
            raw.send(PINGREQ)
            self.assertEqual(raw.read_packet(timeout=3)[0], PacketType.PINGRESP,
                             "a connection open across the reload stopped answering")

    def test_allowlist_and_rate_reloaded_for_one_address_leave_the_others_and_the_open(self):
        kept = self.connected(LISTED, 2) + self.connected(THROTTLED, 2)
        self.refused(LISTED, RATE)
        self.refused(THROTTLED, RATE)

        self.reload(config(allowlist=(LISTED,)), "limits.allowlist")
        kept += self.connected(LISTED, 4)  # 6 open: past the rate's burst and the cap
        self.refused(THROTTLED, RATE)  # its bucket is still empty
        kept += self.connected(FRESH, 2)
        self.refused(FRESH, RATE)  # a new address meets the limits as before
        self.assertAllAlive(kept)

        self.reload(config(allowlist=(LISTED,), rate=1000.0, burst=1000), RATE)
        kept += self.connected(THROTTLED, 1) + self.connected(FRESH, 1)
        self.refused(THROTTLED, CAP)  # 3 open: the cap, which did not change, holds
        kept += self.connected(LISTED, 1)
        self.assertAllAlive(kept)
