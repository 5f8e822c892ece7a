"""Flapping detection at its boundaries: max_count disconnects within window_time ban,
max_count - 1 do not, nor max_count spread wider; the ban lifts at ban_time and not a
tick before; by username (a token by its hash) and by IP when asked; dry_run bans
nothing; the ban is stored, counted and kicks; memory is capped."""
from mqttd.codec.packets import CONNACK_ACCEPTED
from mqttd.edge.flapping import FlappingDetector
from mqttd.store.gate_records import token_hash
from tests.support.gate import TOKEN, GateCase


class FlappingCase(GateCase):
    def setUp(self):
        super().setUp()
        self.flapping_config(max_count=5, window_time=60.0, ban_time=300.0)

    def cycle(self, gate, n, client_id="flappy", step=1.0, **kwargs):
        """Connect and disconnect ``n`` times, ``step`` seconds apart; the last result."""
        result = None
        for _ in range(n):
            result = self.connect(gate, client_id=client_id, **kwargs)
            if result.ticket is not None:
                result.ticket.release()
            self.clock.advance(step)
        return result


class ThresholdTests(FlappingCase):
    def test_max_count_bans_and_max_count_minus_one_does_not(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 4, username=None)
        self.assertEqual(gate.bans.active(), [])
        self.cycle(gate, 1, username=None)
        (ban,) = gate.bans.active()
        self.assertEqual((ban.kind, ban.value, ban.who), ("clientid", "flappy", "flapping"))
        self.assertIn("5 disconnects within 60 s", ban.reason)
        self.assertEqual(ban.until - ban.at, 300.0)
        self.assertEqual(self.connect(gate, client_id="flappy", username=None).reason, "banned")
        self.assertEqual(self.connect(gate, client_id="other", username=None).code,
                         CONNACK_ACCEPTED)
        self.assertEqual(self.metrics.value("edge_flapping_bans", kind="clientid"), 1)
        self.assertEqual(self.metrics.edge_bans_active, 1)

    def test_the_window_slides(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 4, username=None, step=20.0)  # at 0, 20, 40, 60
        self.clock.advance(0.5)
        self.cycle(gate, 1, username=None)  # 0 .. 80.5: five within 80.5 s
        self.assertEqual(gate.bans.active(), [])
        self.cycle(gate, 1, username=None)  # 20 .. 81.5: the last five within 61.5 s
        self.assertEqual(gate.bans.active(), [])
        self.cycle(gate, 1, username=None)  # 40 .. 82.5: within 42.5 s
        self.assertEqual(len(gate.bans.active()), 1)

    def test_exactly_window_time_apart_is_within_it(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 4, username=None, step=15.0)  # at 0, 15, 30, 45
        self.clock.advance(0.001)  # the 5th at 60.001
        self.cycle(gate, 1, username=None)
        self.assertEqual(gate.bans.active(), [])
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, client_id="exact", username=None, step=15.0)  # 0 .. 60
        self.assertEqual(len(gate.bans.active()), 1)

    def test_the_ban_lifts_at_ban_time_and_not_a_tick_before(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, username=None, step=0.0)
        banned_at = self.clock.seconds()
        self.clock.advance(299.999)
        self.assertEqual(self.connect(gate, client_id="flappy", username=None).reason, "banned")
        self.clock.advance(banned_at + 300.0 - self.clock.seconds())
        self.assertEqual(self.connect(gate, client_id="flappy", username=None).code,
                         CONNACK_ACCEPTED)

    def test_the_count_starts_again_after_a_ban(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, username=None, step=0.0)
        self.clock.advance(300.0)
        self.cycle(gate, 4, username=None, step=0.0)
        self.assertEqual(gate.bans.active(), [])


class StoredAndKickedTests(FlappingCase):
    def test_the_ban_is_stored_and_confirmed(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, username=None)
        self.assertEqual(self.store.calls["add_ban"], 1)
        (stored,) = self.store.ban_records.values()
        self.assertEqual(stored, gate.bans.active()[0])

    def test_a_ban_not_stored_is_logged_and_still_in_force(self):
        self.store.fail.add("add_ban")
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, username=None)
        self.assertEqual(len(gate.bans.active()), 1)
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_an_ip_ban_kicks_the_live_connections_from_that_address(self):
        self.flapping_config(max_count=3, window_time=60.0, ban_time=300.0, by_ip=True)
        gate = self.gate(allow_anonymous=True)
        self.connect(gate, client_id="bystander", username=None, host="10.0.0.5")
        self.connect(gate, client_id="elsewhere", username=None, host="10.0.0.6")
        for i in range(3):  # three clients from one address, each disconnecting once
            self.cycle(gate, 1, client_id=f"c{i}", username=None, host="10.0.0.5")
        self.assertEqual(self.kicks, [("bystander", "banned")])
        self.assertEqual(self.metrics.value("edge_flapping_bans", kind="ip"), 1)
        self.assertEqual(self.metrics.value("edge_gate_kicked", reason="banned"), 1)


class ByUsernameTests(FlappingCase):
    def test_a_token_user_is_banned_by_its_token_hash_never_the_token(self):
        self.flapping_config(max_count=3, window_time=60.0, ban_time=300.0, by_username=True)
        self.store.put_token(TOKEN)
        gate = self.gate()
        for i in range(3):
            self.cycle(gate, 1, client_id=f"dev-{i}")
        (ban,) = gate.bans.active()
        self.assertEqual((ban.kind, ban.value), ("username", token_hash(TOKEN)))
        self.assertEqual(self.connect(gate, client_id="dev-new").reason, "banned")
        for record in self.store.ban_records.values():
            self.assertNotIn(TOKEN, repr(record))
        for event in self.events:
            self.assertNotIn(TOKEN, repr(event))

    def test_a_static_user_is_banned_by_its_username(self):
        self.flapping_config(max_count=2, window_time=60.0, ban_time=300.0, by_username=True)
        gate = self.gate()
        for i in range(2):
            self.cycle(gate, 1, client_id=f"u-{i}", username="alice", password=b"secret")
        self.assertEqual([(b.kind, b.value) for b in gate.bans.active()], [("username", "alice")])

    def test_the_ban_line_names_the_token_by_its_prefix_never_whole(self):
        self.flapping_config(max_count=3, window_time=60.0, ban_time=300.0, by_username=True)
        self.store.put_token(TOKEN)
        gate = self.gate()
        self.cycle(gate, 3, client_id="dev-1", host="10.0.0.9")
        lines = self.logged("flapping: banned")
        self.assertEqual(len(lines), 2)  # its client id and its username (the hash)
        for line in lines:
            for part in ("dev-1", "10.0.0.9", f"token {TOKEN[:6]}",
                         "3 disconnects within 60 s (flapping_detect)"):
                self.assertIn(part, line)
            self.assertNotIn(TOKEN, line)
            self.assertNotIn(TOKEN[:7], line.replace(token_hash(TOKEN), ""))

    def test_a_static_users_ban_line_names_the_user(self):
        self.flapping_config(max_count=2, window_time=60.0, ban_time=300.0)
        gate = self.gate()
        self.cycle(gate, 2, client_id="u-1", username="alice", password=b"secret")
        (line,) = self.logged("flapping: banned")
        self.assertIn("(client u-1 from 10.0.0.1, user alice)", line)

    def test_off_by_default(self):
        self.store.put_token(TOKEN)
        gate = self.gate()
        for i in range(5):
            self.cycle(gate, 1, client_id=f"dev-{i}", step=0.25)
        self.assertEqual(gate.bans.active(), [])


class DryRunTests(FlappingCase):
    def test_dry_run_logs_would_ban_and_bans_nothing(self):
        self.flapping_config(max_count=5, window_time=60.0, ban_time=300.0, dry_run=True)
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 5, username=None)
        self.assertEqual(gate.bans.active(), [])
        self.assertEqual(self.store.calls["add_ban"], 0)
        self.assertEqual(self.metrics.value("edge_flapping_would_ban", kind="clientid"), 1)
        self.assertEqual(self.metrics.value("edge_flapping_bans", kind="clientid"), 0)
        (line,) = self.logged("would ban")
        self.assertIn("(client flappy from 10.0.0.1, anonymous; dry_run)", line)

    def test_dry_run_names_a_token_by_its_prefix(self):
        self.flapping_config(max_count=2, window_time=60.0, ban_time=300.0, dry_run=True)
        self.store.put_token(TOKEN)
        gate = self.gate()
        self.cycle(gate, 2, client_id="dev-2")
        (line,) = self.logged("would ban")
        self.assertIn(f"(client dev-2 from 10.0.0.1, token {TOKEN[:6]}; dry_run)", line)
        self.assertNotIn(TOKEN, line)

    def test_disabled_counts_nothing(self):
        self.flapping_config(enable=False, max_count=2)
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 10, username=None, step=0.0)
        self.assertEqual(gate.bans.active(), [])


class MemoryTests(FlappingCase):
    def test_tracked_keys_are_capped_in_bytes(self):
        bans = []
        detector = FlappingDetector(self.clock, self.flapping, bans.append, self.metrics,
                                    self.log_rate, max_tracked_bytes=100 * (250 + 32 * 5))
        for i in range(10_000):
            detector.disconnected(f"client-{i}")
        self.assertEqual(len(detector), 100)

    def test_stale_keys_go_first(self):
        bans = []
        detector = FlappingDetector(self.clock, self.flapping, bans.append, self.metrics,
                                    self.log_rate)
        for i in range(50):
            detector.disconnected(f"client-{i}")
        self.clock.advance(60.001)
        detector.disconnected("fresh")
        self.assertEqual(len(detector), 1)


class BusiestTests(FlappingCase):
    def test_the_keys_with_the_most_disconnects_in_the_window_first(self):
        gate = self.gate(allow_anonymous=True)
        self.cycle(gate, 3, client_id="three", username=None)
        self.cycle(gate, 1, client_id="one", username=None)
        self.cycle(gate, 2, client_id="two", username=None)
        self.assertEqual([(kind, value, n) for kind, value, n, _ in gate.flapping_now(10)],
                         [("clientid", "three", 3), ("clientid", "two", 2),
                          ("clientid", "one", 1)])
        self.assertEqual(len(gate.flapping_now(2)), 2)
        self.clock.advance(55.5)  # "three"'s first two disconnects leave the window
        self.assertEqual([(value, n) for _, value, n, _ in gate.flapping_now(10)],
                         [("two", 2), ("one", 1), ("three", 1)])
        self.clock.advance(60)
        self.assertEqual(gate.flapping_now(10), [])
