"""A storm of bad tokens at the real appliance (issue 13, point 4): 2,000 CONNECTs with
20 unknown tokens are all refused with CONNACK 0x05, and SQLite is read once per token
(the master's GateStore counts its reads: ``gate_token_lookups``); the per-token rate
refuses most of them before any lookup, the negative cache the rest. A good client is
let in throughout.

Beside a flapping storm too: the bans the flapping detector writes move the bans'
own counter in SQLite (``ban_version``), so the gate reloads its bans and keeps its token
caches, and the bad tokens still cost one SQLite read each."""
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


def reloads(samples, what):
    return samples.get(series("edge_gate_reloads_total", what=what), 0)


class _FlappingStormCases:
    def flap(self, client_id):
        """Two connections of ``client_id`` that end at once: the second end bans it."""
        for _ in range(2):
            raw = self.raw()
            code, _ = raw.connect(client_id=client_id, username="calm",
                                  password=b"calm-password")
            self.assertEqual(code, 0)
            raw.close()

    def storm_round(self, round_):
        for token in TOKENS:
            raw = self.raw()
            code, _ = raw.connect(client_id=f"storm-{round_}-{token[10:12]}", username=token)
            self.assertEqual(code, NOT_AUTHORIZED)
            raw.close()

    def test_flapping_bans_beside_a_bad_token_storm_cost_no_read_more(self):
        url = wait_for(lambda: self.broker.metrics_url, message="metrics URL",
                       context=self.context)
        # After the gate's first load (it counts as a change of tokens and of bans):
        before = wait_for_series(url, lambda s: reloads(s, "tokens") >= 1)
        round_ = 0
        while True:  # until the gate reloaded its bans 5 times amid the storm
            self.flap(f"flapper-{round_}")
            self.storm_round(round_)
            round_ += 1
            if round_ % 5 == 0 and reloads(scrape(url), "bans") - reloads(before, "bans") >= 5:
                break
            self.assertLess(round_, 400, "the gate never reloaded the flapping bans")
        self.storm_round(round_)  # the bad tokens once more, after those reloads
        after = scrape(url)
        self.assertEqual(after.get(series("gate_token_lookups_total"), 0)
                         - before.get(series("gate_token_lookups_total"), 0), len(TOKENS))
        self.assertEqual(reloads(after, "tokens"), reloads(before, "tokens"))
        self.assertGreaterEqual(
            after.get(series("edge_flapping_bans_total", kind="clientid"), 0), 5)
        banned = self.raw()
        self.assertEqual(banned.connect(client_id="flapper-0", username="calm",
                                        password=b"calm-password")[0], NOT_AUTHORIZED)


# The bad tokens stay in the negative cache for the whole storm (its default, 10 s, may
# pass on a loaded machine); the flappers are banned at their 2nd disconnect.
FLAPPING = ("[auth]\nnegative_cache_ttl = 600.0\n" + STATIC
            + "[flapping_detect]\nmax_count = 2\nwindow_time = 60.0\nban_time = 600.0\n")


class TreeStormTests(_StormCases, BrokerTestCase):
    config = "[server]\nworkers = 2\n" + STATIC


class SingleStormTests(_StormCases, BrokerTestCase):
    config = "[server]\nworkers = 0\n" + STATIC


class TreeFlappingStormTests(_FlappingStormCases, BrokerTestCase):
    config = "[server]\nworkers = 2\n" + FLAPPING


class SingleFlappingStormTests(_FlappingStormCases, BrokerTestCase):
    config = "[server]\nworkers = 0\n" + FLAPPING
