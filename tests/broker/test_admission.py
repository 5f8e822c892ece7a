"""The CONNECT decision behind one call: Admission.admit(connect, peer) -> Deferred.

The protocol only calls it and obeys, so the master's gate can answer in its place:
the last tests put a stand-in gate where the broker's Admission was.
"""
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial import unittest

from mqttd.broker.admission import Admission, Admitted, AuthResult, Refused
from mqttd.codec import Connack, Connect, Subscribe
from tests.support.broker import Client, Harness

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


class Recording:
    """An authenticator that answers ``code`` and records what it was asked."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def authenticate(self, client_id, username, password, peer=None):
        self.asked.append((client_id, username, password))
        return self.answer() if callable(self.answer) else succeed(self.answer)


def admission(authenticator, max_clientid_len=23, allow_zero_length_clientid=True):
    ids = iter(range(1, 100))
    return Admission(max_clientid_len, allow_zero_length_clientid, authenticator,
                     lambda: f"gen-{next(ids)}")


class AdmissionTests(unittest.TestCase):
    def decide(self, admit, connect):
        decisions = []
        admit.admit(connect, PEER).addCallback(decisions.append)
        self.assertEqual(len(decisions), 1)
        return decisions[0]

    def test_accepted_with_its_own_client_id(self):
        auth = Recording(0)
        self.assertEqual(self.decide(admission(auth), Connect("dev", True, 0, "u", b"p")),
                         Admitted("dev"))
        self.assertEqual(auth.asked, [("dev", "u", b"p")])

    def test_empty_client_id_gets_a_generated_one(self):
        auth = Recording(0)
        self.assertEqual(self.decide(admission(auth), Connect("", True, 0)), Admitted("gen-1"))
        self.assertEqual(auth.asked, [("gen-1", None, None)])

    def test_client_id_rules_refuse_before_authentication(self):
        auth = Recording(0)
        cases = [
            (admission(auth, max_clientid_len=3), Connect("four", True, 0),
             Refused(0x02, "client id too long")),
            (admission(auth), Connect("", False, 0), Refused(0x02, "empty client id")),
            (admission(auth, allow_zero_length_clientid=False), Connect("", True, 0),
             Refused(0x02, "empty client id")),
        ]
        for admit, connect, refused in cases:
            self.assertEqual(self.decide(admit, connect), refused)
        self.assertEqual(auth.asked, [])

    def test_refused_credentials(self):
        for code, reason in ((4, "bad credentials"), (5, "not authorized"),
                             (3, "auth unavailable"), (2, "auth refused")):
            self.assertEqual(self.decide(admission(Recording(code)), Connect("dev", True, 0)),
                             Refused(code, reason, "dev", by_auth=True))

    def test_a_broken_authenticator_is_server_unavailable_never_a_failure(self):
        def raises():
            raise RuntimeError("auth backend bug")

        for answer in (raises, lambda: fail(RuntimeError("auth backend down"))):
            self.assertEqual(self.decide(admission(Recording(answer)), Connect("dev", True, 0)),
                             Refused(3, "auth unavailable", "dev"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_an_auth_result_carries_the_account_and_the_ticket(self):
        ticket = Ticket()
        self.assertEqual(
            self.decide(admission(Recording(AuthResult(0, "acme", ticket))),
                        Connect("dev", True, 0, "tok", None)),
            Admitted("dev", "acme", ticket))
        self.assertEqual(ticket.released, 0)

    def test_a_refusing_auth_result_names_its_reason_and_frees_its_ticket(self):
        ticket = Ticket()
        self.assertEqual(
            self.decide(admission(Recording(AuthResult(5, ticket=ticket, reason="quota"))),
                        Connect("dev", True, 0, "tok", None)),
            Refused(5, "quota", "dev", by_auth=True))
        self.assertEqual(ticket.released, 1)

    def test_the_authenticator_is_told_the_peer(self):
        seen = []

        class PeerAware:
            def authenticate(self, client_id, username, password, peer):
                seen.append(peer)
                return succeed(0)

        self.decide(admission(PeerAware()), Connect("dev", True, 0))
        self.assertEqual(seen, [PEER])


class Ticket:
    def __init__(self):
        self.released = 0

    def release(self):
        self.released += 1


class Gate:
    """Stands in for the master's gate: answers admit() as the test says."""

    def __init__(self):
        self.asked = []

    def admit(self, connect, peer, decided=None):
        d = Deferred()
        self.asked.append((connect, peer, d))
        return d


class ProtocolAsksAdmissionTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness()
        self.gate = Gate()
        self.h.broker.admission = self.gate

    def test_the_decision_names_the_client_id(self):
        c = Client(self.h)
        c.send(Connect("asked-as", True, 0))
        connect, peer, d = self.gate.asked[0]
        self.assertEqual((connect.client_id, peer), ("asked-as", c.transport.getPeer()))
        self.assertEqual(c.received(), [])
        d.callback(Admitted("decided-as"))
        self.assertEqual(c.received(), [Connack(False, 0)])
        self.assertEqual(list(self.h.broker.sessions), ["decided-as"])
        c.send(Subscribe(1, (("t", 0),)))
        self.assertEqual(len(self.h.broker.trie), 1)

    def test_a_refusal_is_the_connack_code_and_a_close(self):
        c = Client(self.h)
        c.send(Connect("dev", True, 0))
        self.gate.asked[0][2].callback(Refused(0x05, "banned"))
        self.assertEqual(c.received(), [Connack(False, 0x05)])
        self.assertTrue(c.closed)
        self.assertEqual(self.h.broker.sessions, {})

    def test_the_ticket_is_released_once_when_the_connection_ends(self):
        c = Client(self.h)
        c.send(Connect("dev", True, 0))
        ticket = Ticket()
        self.gate.asked[0][2].callback(Admitted("dev", "acme", ticket))
        self.assertEqual(ticket.released, 0)
        c.lose()
        self.assertEqual(ticket.released, 1)

    def test_a_ticket_for_a_connection_already_gone_is_released_at_once(self):
        c = Client(self.h)
        c.send(Connect("dev", True, 0))
        c.lose()
        ticket = Ticket()
        self.gate.asked[0][2].callback(Admitted("dev", "acme", ticket))
        self.assertEqual(ticket.released, 1)
        self.assertEqual(self.h.broker.sessions, {})


class DecidedByTheMasterTests(unittest.TestCase):
    """A worker of the tree: the master's gate decided; the worker does not ask again."""

    def decide(self, admit, connect, decided):
        decisions = []
        admit.admit(connect, PEER, decided).addCallback(decisions.append)
        self.assertEqual(len(decisions), 1)
        return decisions[0]

    def test_the_authenticator_is_not_asked_and_the_account_comes_along(self):
        auth = Recording(4)
        self.assertEqual(
            self.decide(admission(auth), Connect("dev", True, 0, "tok", None),
                        AuthResult(0, "acme")),
            Admitted("dev", "acme"))
        self.assertEqual(auth.asked, [])

    def test_an_empty_client_id_takes_the_masters(self):
        self.assertEqual(
            self.decide(admission(Recording(0)), Connect("", True, 0),
                        AuthResult(0, client_id="mqttd-m-7")),
            Admitted("mqttd-m-7"))

    def test_the_client_id_rules_still_hold(self):
        self.assertEqual(
            self.decide(admission(Recording(0), max_clientid_len=3), Connect("four", True, 0),
                        AuthResult(0)),
            Refused(0x02, "client id too long"))


class KickTests(unittest.TestCase):
    def test_a_kick_closes_the_live_connection_of_that_client_id_only(self):
        h = Harness()
        kicked, other = Client(h), Client(h)
        kicked.connect("dev-1")
        other.connect("dev-2")
        self.assertTrue(h.broker.kick("dev-1", "token revoked"))
        self.assertTrue(kicked.closed)
        self.assertFalse(other.closed)
        self.assertFalse(h.broker.kick("nobody", "banned"))
