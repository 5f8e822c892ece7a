"""SIGHUP's new [auth] and [flapping_detect] in the gate (``Gate.reloading``), on a Clock:
nothing changes until the prepared reload is applied; then the next CONNECT meets the
new rate, users, anonymous rule and require_password, and the next disconnect the new
flapping rules; live clients stay but for those the new users or anonymous rule refuse,
which are kicked."""
import attrs

from mqttd.codec.packets import CONNACK_ACCEPTED, CONNACK_BAD_CREDENTIALS
from mqttd.config import AuthConfig, FlappingDetectConfig, User
from mqttd.edge.flapping import FlappingDetector
from tests.support.gate import TOKEN, GateCase

ALICE = User("alice", "secret")
RATE = "auth rate"


def auth(**changes):
    return AuthConfig(**{"users": (ALICE,), **changes})


class ReloadCase(GateCase):
    def reload(self, gate, flapping=None, **auth_changes):
        apply = gate.reloading(auth(**auth_changes), flapping or self.flapping)
        apply()


class RateReloadTests(ReloadCase):
    def test_a_lower_rate_refuses_the_2nd_attempt_within_a_second(self):
        self.store.put_token(TOKEN)
        gate = self.gate()  # 4 a second, burst 4
        self.assertEqual(self.connect(gate).code, CONNACK_ACCEPTED)  # at 0
        self.reload(gate, rate_per_token=1.0, rate_burst=1)
        self.clock.advance(0.5)  # the attempt at 0 is still within the new 1 s window
        self.assertEqual(self.connect(gate).reason, RATE)
        self.clock.advance(0.499)
        self.assertEqual(self.connect(gate).reason, RATE)
        self.clock.advance(0.001)  # 1 s after the one at 0 (refused ones do not count)
        self.assertEqual(self.connect(gate).code, CONNACK_ACCEPTED)
        self.clock.advance(0.999)
        self.assertEqual(self.connect(gate).reason, RATE)

    def test_a_lower_burst_counts_the_attempts_made_before_it(self):
        self.store.put_token(TOKEN)
        gate = self.gate()  # 4 a second, burst 4
        self.assertEqual([r for _, r in self.codes(gate, 3)], [None] * 3)
        self.reload(gate, rate_per_token=2.0, rate_burst=2)  # 2 within 1 s: used already
        self.assertEqual(self.connect(gate).reason, RATE)
        self.clock.advance(1.0)
        self.assertEqual([r for _, r in self.codes(gate, 3)], [None, None, RATE])

    def test_a_prepared_reload_changes_nothing_until_applied(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        gate.reloading(auth(rate_per_token=1.0, rate_burst=1, allow_anonymous=True),
                       self.flapping)
        self.assertEqual([r for _, r in self.codes(gate, 5)], [None] * 4 + [RATE])
        self.assertEqual(self.connect(gate, client_id="anon", username=None).reason,
                         "not authorized")

    def test_a_higher_rate_or_none_lets_more_in(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        self.assertEqual([r for _, r in self.codes(gate, 5)], [None] * 4 + [RATE])
        self.reload(gate, rate_per_token=0.0)  # off
        self.assertEqual([r for _, r in self.codes(gate, 20)], [None] * 20)
        self.reload(gate, rate_per_token=100.0, rate_burst=8)
        self.assertEqual([r for _, r in self.codes(gate, 9)], [None] * 8 + [RATE])


class CredentialReloadTests(ReloadCase):
    def setUp(self):
        super().setUp()
        self.store.put_token(TOKEN)
        self.gate_ = self.gate(allow_anonymous=True)
        self.anon = self.connect(self.gate_, client_id="anon", username=None).ticket
        self.alice = self.connect(self.gate_, client_id="a", username="alice",
                                  password=b"secret").ticket
        self.device = self.connect(self.gate_, client_id="dev", username=TOKEN).ticket

    def test_anonymous_off_kicks_the_anonymous_clients_and_refuses_the_next(self):
        self.reload(self.gate_, allow_anonymous=False)
        self.assertEqual(self.kicks, [("anon", "anonymous off")])
        self.assertEqual(self.connect(self.gate_, client_id="anon2", username=None).reason,
                         "not authorized")
        self.assertEqual(self.metrics.value("edge_gate_kicked", reason="anonymous off"), 1)

    def test_a_user_added_gets_in_a_changed_one_is_kicked_an_unchanged_one_stays(self):
        bob = User("bob", "pw-b")
        self.reload(self.gate_, users=(ALICE, bob), allow_anonymous=True)
        self.assertEqual(self.kicks, [])
        self.assertEqual(self.connect(self.gate_, client_id="b", username="bob",
                                      password=b"pw-b").code, CONNACK_ACCEPTED)
        self.reload(self.gate_, users=(User("alice", "new"), bob), allow_anonymous=True)
        self.assertEqual(self.kicks, [("a", "user changed")])
        self.assertEqual(self.connect(self.gate_, client_id="a2", username="alice",
                                      password=b"secret").code, CONNACK_BAD_CREDENTIALS)
        self.assertEqual(self.connect(self.gate_, client_id="a3", username="alice",
                                      password=b"new").code, CONNACK_ACCEPTED)

    def test_a_user_removed_is_kicked_and_its_name_is_a_token_again(self):
        self.reload(self.gate_, users=(), allow_anonymous=True)
        self.assertEqual(self.kicks, [("a", "user changed")])
        self.assertEqual(self.connect(self.gate_, client_id="a2", username="alice",
                                      password=b"secret").reason, "bad token")

    def test_a_users_new_account_kicks_it(self):
        self.reload(self.gate_, users=(attrs.evolve(ALICE, account="acme"),),
                    allow_anonymous=True)
        self.assertEqual(self.kicks, [("a", "user changed")])
        again = self.connect(self.gate_, client_id="a", username="alice", password=b"secret")
        self.assertEqual(again.account, "acme")

    def test_require_password_applies_to_the_next_connect_only(self):
        self.reload(self.gate_, require_password=True, allow_anonymous=True)
        self.assertEqual(self.kicks, [])
        self.assertEqual(self.connect(self.gate_, client_id="dev2").code,
                         CONNACK_BAD_CREDENTIALS)
        self.assertEqual(self.connect(self.gate_, client_id="dev3",
                                      password=TOKEN.encode()).code, CONNACK_ACCEPTED)


class FlappingReloadTests(ReloadCase):
    def setUp(self):
        super().setUp()
        self.bans = []

    def cycle(self, gate, n, client_id="flappy"):
        for _ in range(n):
            self.connect(gate, client_id=client_id, username=None).ticket.release()
            self.clock.advance(1.0)

    def flapping_of(self, **changes):
        return attrs.evolve(FlappingDetectConfig(), **changes)

    def test_enabled_disabled_and_dry_run_by_sighup(self):
        gate = self.gate(allow_anonymous=True)  # flapping off
        self.cycle(gate, 5)
        self.assertEqual(self.store.calls["add_ban"], 0)
        self.reload(gate, self.flapping_of(max_count=3), allow_anonymous=True)
        self.cycle(gate, 3)
        self.assertEqual(self.store.calls["add_ban"], 1)
        self.reload(gate, self.flapping_of(max_count=3, dry_run=True), allow_anonymous=True)
        self.cycle(gate, 3, "other")
        self.assertEqual(self.store.calls["add_ban"], 1)
        self.assertEqual(self.metrics.value("edge_flapping_would_ban", kind="clientid"), 1)
        self.reload(gate, self.flapping_of(enable=False), allow_anonymous=True)
        self.cycle(gate, 10, "third")
        self.assertEqual(self.store.calls["add_ban"], 1)

    def test_a_lower_max_count_keeps_the_newest_disconnects(self):
        detector = FlappingDetector(self.clock, self.flapping_of(max_count=5), self.bans.append,
                                    self.metrics, self.log_rate)
        for _ in range(3):  # at 0, 1 and 2 s
            detector.disconnected("c")
            self.clock.advance(1.0)
        detector.reconfigure(self.flapping_of(max_count=2, window_time=1.5))
        detector.disconnected("c")  # at 3 s: the 2 newest (2 and 3 s) are within 1.5 s
        self.assertEqual([b.value for b in self.bans], ["c"])
        detector.reconfigure(self.flapping_of(max_count=4))
        for _ in range(3):  # the count started again after the ban
            detector.disconnected("d")
        detector.reconfigure(self.flapping_of(max_count=3))
        self.assertEqual([b.value for b in self.bans], ["c"])
        detector.disconnected("d")  # the 4th, counted under a max_count of 3
        self.assertEqual([b.value for b in self.bans], ["c", "d"])

    def test_kinds_no_longer_counted_are_forgotten(self):
        detector = FlappingDetector(
            self.clock, self.flapping_of(by_username=True, by_ip=True), self.bans.append,
            self.metrics, self.log_rate)
        detector.disconnected("c", "user-hash", "10.0.0.1")
        self.assertEqual(len(detector), 3)
        detector.reconfigure(self.flapping_of(by_username=True))
        self.assertEqual(len(detector), 2)
        detector.reconfigure(self.flapping_of(enable=False))
        self.assertEqual(len(detector), 0)
