"""The door of the real ``twistd mqttd``, from several loopback source addresses: each
limit refuses at its boundary (the socket is closed without a CONNACK) and says so in
the log, while the other addresses are unaffected; a banned network is refused; an
allowlisted address is exempt."""
from tests.integration.support.common import wait_for
from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase

# Loopback is allowlisted by default; these tests limit it.
LIMITS = """
[auth]
allow_anonymous = true

[limits]
allowlist = []
"""


@requires_mqttd("the door's per-address limits")
class DoorCase(BrokerTestCase):
    def admitted(self, source):
        """Connect from ``source`` and get CONNACK 0; the connection stays open."""
        raw = self.raw(source=source)
        self.assertEqual(raw.connect(client_id=self.new_id(source))[0], 0)
        return raw

    def refused(self, source):
        return self.refused_at_accept(source)

    def assertLogged(self, line):
        wait_for(lambda: line in self.broker.output(), message=repr(line), context=self.context)


class PerAddressCapTests(DoorCase):
    config = LIMITS + "max_conn_per_ip = 2\nmax_conn_rate_per_ip = 0\n"

    def test_the_third_from_one_address_is_refused_and_the_others_are_not(self):
        first = self.admitted("127.0.0.2")
        self.admitted("127.0.0.2")
        self.assertTrue(self.refused("127.0.0.2"))
        self.assertLogged("refused 127.0.0.2 at accept: 2 connections open from it "
                          "(limits.max_conn_per_ip)")
        self.admitted("127.0.0.3")
        self.admitted("127.0.0.3")
        first.close()  # its slot comes back once the broker has seen it close
        wait_for(lambda: not self.refused("127.0.0.2"), context=self.context,
                 message="a connection from 127.0.0.2 after one of its two closed")
        self.assertTrue(self.refused("127.0.0.2"))


class ConnectRateTests(DoorCase):
    config = LIMITS + "max_conn_per_ip = 0\nmax_conn_rate_per_ip = 0.001\nconn_rate_burst = 3\n"

    def test_the_burst_passes_and_the_next_connect_is_refused(self):
        for _ in range(3):
            self.admitted("127.0.0.4").close()  # closing gives no token back
        self.assertTrue(self.refused("127.0.0.4"))
        self.assertLogged("refused 127.0.0.4 at accept: over 0.001 connects a second from it "
                          "(burst 3) (limits.max_conn_rate_per_ip)")
        for _ in range(3):
            self.admitted("127.0.0.5")


class GlobalCapTests(DoorCase):
    config = LIMITS.replace("[limits]", "[broker]\nmax_connections = 3\n\n[limits]")

    def test_max_connections_counts_every_address(self):
        self.admitted("127.0.0.2")
        self.admitted("127.0.0.2")
        third = self.admitted("127.0.0.3")
        self.assertTrue(self.refused("127.0.0.6"))
        self.assertLogged("refused 127.0.0.6 at accept: 3 connections open "
                          "(broker.max_connections)")
        third.close()
        wait_for(lambda: not self.refused("127.0.0.6"), context=self.context,
                 message="a connection after one of three closed")


class BanTests(DoorCase):
    config = LIMITS + 'banned = ["127.0.0.64/26", "127.0.0.7"]\n'

    def test_a_banned_network_and_address_are_refused(self):
        for source in ("127.0.0.64", "127.0.0.100", "127.0.0.127", "127.0.0.7"):
            self.assertTrue(self.refused(source), source)
        self.assertLogged("refused 127.0.0.100 at accept: banned address (limits.banned)")
        for source in ("127.0.0.63", "127.0.0.128", "127.0.0.8"):
            self.admitted(source)


class AllowlistTests(DoorCase):
    config = (LIMITS.replace("allowlist = []", 'allowlist = ["127.0.0.9"]')
              + "max_conn_per_ip = 1\nmax_conn_rate_per_ip = 0.001\nconn_rate_burst = 1\n")

    def test_an_allowlisted_address_is_exempt_from_the_per_address_limits(self):
        for _ in range(4):
            self.admitted("127.0.0.9")
        self.admitted("127.0.0.10")
        self.assertTrue(self.refused("127.0.0.10"))
