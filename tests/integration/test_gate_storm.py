"""A storm of bad tokens at the real appliance (issue 13, point 4): 2,000 CONNECTs with
20 unknown tokens are all refused with CONNACK 0x05, and SQLite is read once per token
(the master's GateStore counts its reads: ``gate_token_lookups``); the per-token rate
refuses most of them before any lookup, the negative cache the rest. A good client is
let in throughout."""
from tests.integration.support.common import wait_for
from tests.integration.support.metrics import scrape, series, wait_for_series
from tests.integration.support.testcase import BrokerTestCase

NOT_AUTHORIZED = 5
TOKENS = [f"bad-token-{n:02d}-{'x' * 20}" for n in range(20)]


class _StormCases:
    def test_bad_tokens_are_read_from_sqlite_once_each(self):
        url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                       context=self.context)
        before = scrape(url).get(series("gate_token_lookups_total"), 0)
        for round_ in range(100):
            for token in TOKENS:
                raw = self.raw()
                code, _ = raw.connect(client_id=f"storm-{round_}-{token[10:12]}",
                                      username=token)
                self.assertEqual(code, NOT_AUTHORIZED)
                raw.close()
            if round_ == 50:
                good = self.raw()
                self.assertEqual(good.connect(client_id="calm", username="calm",
                                              password=b"calm-password")[0], 0)
        refused = wait_for_series(url, lambda s: (
            s.get(series("edge_gate_refused_total", reason="bad token"), 0)
            + s.get(series("edge_gate_refused_total", reason="auth rate"), 0) >= 2000))
        self.assertEqual(refused.get(series("gate_token_lookups_total"), 0) - before,
                         len(TOKENS))
        self.assertGreater(refused.get(series("edge_gate_refused_total", reason="auth rate"),
                                       0), 0)


STATIC = '[[auth.users]]\nusername = "calm"\npassword = "calm-password"\n'


class TreeStormTests(_StormCases, BrokerTestCase):
    config = "[server]\nworkers = 2\n" + STATIC


class SingleStormTests(_StormCases, BrokerTestCase):
    config = "[server]\nworkers = 0\n" + STATIC
