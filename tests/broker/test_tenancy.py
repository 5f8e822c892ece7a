"""Tenant isolation in the broker: each account's clients live inside its own topic
namespace (``$a/ACCOUNT/`` + their topics, mqttd.namespace), see their own topics, and
cannot reach out of it; clients without an account cannot reach into the mounts.

The accounts come from the real StaticAuthenticator (``auth.users`` with ``account``),
as the gate's AuthResult(0, account=...) gives them."""
from twisted.internet.defer import succeed
from twisted.logger import formatEvent
from twisted.trial.unittest import TestCase

from mqttd.broker.admission import AuthResult
from mqttd.broker.auth import StaticAuthenticator
from mqttd.codec import Connack, Puback, Suback, Subscribe, Unsubscribe
from mqttd.codec.packets import Will
from mqttd.config import AuthConfig, User
from tests.support.broker import Harness, pub, publishes
from tests.support.logs import capture_logs
from tests.support.persistence import Appliance
from tests.support.store import make_dir

USERS = (User("acme-1", "pw", "acme"), User("acme-2", "pw", "acme"),
         User("globex-1", "pw", "globex"), User("plain", "pw"))


def authenticator():
    return StaticAuthenticator(AuthConfig(allow_anonymous=True, users=USERS))


def connect(h, client_id, username=None, **kw):
    c = h.client()
    connack = c.connect(client_id, username=username,
                        password=None if username is None else b"pw", **kw)
    return c, connack


def subscribed(h, client_id, username, topic_filter, qos=0, **kw):
    c, connack = connect(h, client_id, username, **kw)
    assert connack.return_code == 0, connack
    c.send(Subscribe(1, ((topic_filter, qos),)))
    return c, c.received()


def seen(client):
    return [(p.topic, p.payload) for p in publishes(client.received())]


class NamespaceTests(TestCase):
    def setUp(self):
        self.h = Harness(authenticator=authenticator())

    def test_two_accounts_topics_of_the_same_name_are_two_topics(self):
        acme, _ = subscribed(self.h, "a-sub", "acme-1", "/v1.6/devices/x")
        globex, _ = subscribed(self.h, "g-sub", "globex-1", "/v1.6/devices/x")
        pub_a, _ = connect(self.h, "a-pub", "acme-2")
        pub_a.send(pub("/v1.6/devices/x", b"acme data"))
        pub_g, _ = connect(self.h, "g-pub", "globex-1")
        pub_g.send(pub("/v1.6/devices/x", b"globex data"))
        # Each sees its own account's message, under its own topic (no mount shown).
        self.assertEqual(seen(acme), [("/v1.6/devices/x", b"acme data")])
        self.assertEqual(seen(globex), [("/v1.6/devices/x", b"globex data")])

    def test_ubidots_topics_work_inside_the_namespace(self):
        sub, _ = subscribed(self.h, "a-sub", "acme-1", "/v1.6/devices/+/+/lv")
        p, _ = connect(self.h, "a-pub", "acme-2")
        p.send(pub("/v1.6/devices/truck-1/speed/lv", b"42"))
        self.assertEqual(seen(sub), [("/v1.6/devices/truck-1/speed/lv", b"42")])

    def test_a_client_without_an_account_sees_no_account_with_hash(self):
        watcher, _ = subscribed(self.h, "w", None, "#")
        plus, _ = subscribed(self.h, "w2", "plain", "+/#")
        for client_id, user in (("a", "acme-1"), ("g", "globex-1")):
            c, _ = connect(self.h, client_id, user)
            c.send(pub("/v1.6/devices/x", b"tenant"), pub("t", b"tenant"))
        own, _ = connect(self.h, "n", "plain")
        own.send(pub("t", b"no account"))
        self.assertEqual(seen(watcher), [("t", b"no account")])
        self.assertEqual(seen(plus), [("t", b"no account")])

    def test_an_accounts_hash_sees_its_own_account_only(self):
        acme, _ = subscribed(self.h, "a-sub", "acme-1", "#")
        for client_id, user in (("g", "globex-1"), ("n", "plain"), ("anon", None)):
            c, _ = connect(self.h, client_id, user)
            c.send(pub("t", b"other"))
        mine, _ = connect(self.h, "a-pub", "acme-2")
        mine.send(pub("t", b"mine"))
        self.assertEqual(seen(acme), [("t", b"mine")])

    def test_the_stored_message_holds_the_mounted_topic_and_its_client_id(self):
        c, _ = connect(self.h, "a-pub", "acme-1")
        c.send(pub("/v1.6/devices/x", b"1"))
        (message,) = self.h.store.messages
        self.assertEqual((message.topic, message.client_id),
                         ("$a/acme//v1.6/devices/x", "a-pub"))

    def test_an_accounts_publish_to_a_dollar_topic_closes_without_ack(self):
        c, _ = connect(self.h, "a-pub", "acme-1")
        events = capture_logs(self)
        c.send(pub("ok", b"1", qos=1, pid=1), pub("$SYS/x", b"2", qos=1, pid=2),
               pub("after", b"3", qos=1, pid=3))
        self.assertEqual(c.received(), [Puback(1)])
        self.assertTrue(c.closed)
        self.assertEqual([m.topic for m in self.h.store.messages], ["$a/acme/ok"])
        self.assertEqual(self.h.broker.metrics.mqtt_namespace_denied["publish"], 1)
        line = next(formatEvent(e) for e in events if "denied" in e.get("log_format", ""))
        for part in ("a-pub", "192.0.2.7", "account=acme", "$SYS/x", "namespace"):
            self.assertIn(part, line)

    def test_an_accounts_subscription_to_a_dollar_filter_gets_0x80(self):
        c, packets = subscribed(self.h, "a-sub", "acme-1", "$SYS/#")
        self.assertEqual(packets, [Suback(1, (0x80,))])
        c.send(Subscribe(2, (("$SYS/x", 1), ("t", 1), ("$a/globex/#", 0))))
        self.assertEqual(c.received(), [Suback(2, (0x80, 1, 0x80))])
        self.assertFalse(c.closed)
        self.assertEqual(self.h.broker.metrics.mqtt_namespace_denied["subscribe"], 3)
        # What it was refused is not held: a $SYS publish by a plain client is not its.
        n, _ = connect(self.h, "n", "plain")
        n.send(pub("$SYS/x", b"x"))
        self.assertEqual(seen(c), [])

    def test_the_mounts_are_reserved_for_clients_without_an_account(self):
        for user in (None, "plain"):
            c, packets = subscribed(self.h, f"s-{user}", user, "$a/acme/#")
            self.assertEqual(packets, [Suback(1, (0x80,))])
            c.send(Subscribe(2, (("$a/#", 0), ("$a", 0), ("#", 0))))
            self.assertEqual(c.received(), [Suback(2, (0x80, 0x80, 0))])
            p, _ = connect(self.h, f"p-{user}", user)
            p.send(pub("$a/acme/t", b"forged", qos=1, pid=1))
            self.assertEqual(p.received(), [])
            self.assertTrue(p.closed)
        self.assertEqual(list(self.h.store.messages), [])
        self.assertEqual(self.h.broker.metrics.mqtt_namespace_denied["publish"], 2)
        # A client without an account keeps $SYS and other $ topics as before.
        sys_sub, _ = subscribed(self.h, "sys", None, "$SYS/#")
        c, _ = connect(self.h, "sys-pub", None)
        c.send(pub("$SYS/x", b"ok"))
        self.assertEqual(seen(sys_sub), [("$SYS/x", b"ok")])

    def test_a_client_id_under_the_mounts_is_refused_without_an_account(self):
        c, connack = connect(self.h, "$a/acme/dev-1", "plain")
        self.assertEqual(connack, Connack(False, 0x02))
        c, connack = connect(self.h, "$a/acme/dev-1", "acme-1")  # its own account: fine
        self.assertEqual(connack.return_code, 0)
        self.assertEqual(self.h.broker.metrics.mqtt_client_ids_refused, 1)

    def test_unsubscribe_takes_the_clients_own_filter(self):
        c, _ = subscribed(self.h, "a-sub", "acme-1", "t")
        c.send(Unsubscribe(2, ("t",)))
        c.received()
        p, _ = connect(self.h, "a-pub", "acme-2")
        p.send(pub("t", b"after"))
        self.assertEqual(seen(c), [])
        self.assertEqual(len(self.h.broker.trie), 0)


class _AcmeTokens:
    """The gate's answer for a device token of account acme (any username not static)."""

    def authenticate(self, client_id, username, password, peer=None):
        return succeed(AuthResult(0, account="acme"))


class DenialLineTests(TestCase):
    """A denial's log line names the client's credentials as the gate does: a token by
    its prefix (a device's token is its username), never whole; a static user by name."""

    TOKEN = "0zoub16X3g8XOOTbWiaW-XcJdnGPnqcU"

    def denial(self, h, client_id, username, action):
        c, connack = connect(h, client_id, username)
        self.assertEqual(connack.return_code, 0)
        events = capture_logs(self)
        if action == "publish":
            c.send(pub("$SYS/x", b"x"))
        else:
            c.send(Subscribe(1, (("$SYS/#", 0),)))
        (line,) = [formatEvent(e) for e in events if "denied" in e.get("log_format", "")]
        return line

    def test_a_tokens_denied_publish_and_subscribe_name_its_prefix(self):
        h = Harness(authenticator=_AcmeTokens(), static_users={"acme-1"})
        for action, client_id in (("publish", "dev-1"), ("subscribe", "dev-2")):
            line = self.denial(h, client_id, self.TOKEN, action)
            for part in (f"{action} denied by namespace", client_id, "192.0.2.7",
                         "account=acme", "(token 0zoub1)"):
                self.assertIn(part, line)
            self.assertNotIn(self.TOKEN[:7], line)

    def test_a_static_users_denial_names_the_user(self):
        h = Harness(authenticator=authenticator(), static_users={u.username for u in USERS})
        self.assertIn("(user acme-1)", self.denial(h, "a-1", "acme-1", "publish"))


class SessionTests(TestCase):
    def setUp(self):
        self.h = Harness(authenticator=authenticator())

    def test_two_accounts_same_client_id_are_two_sessions(self):
        a, _ = connect(self.h, "dev-1", "acme-1", clean=False)
        g, connack = connect(self.h, "dev-1", "globex-1", clean=False)
        self.assertEqual(connack, Connack(False, 0))  # not acme's session
        self.assertFalse(a.closed)  # and no takeover across tenants
        g.lose()
        g2, connack = connect(self.h, "dev-1", "globex-1", clean=False)
        self.assertEqual(connack, Connack(True, 0))
        self.assertTrue(a.transport.connected)


class RetainedAndWillTests(TestCase):
    def setUp(self):
        self.h = Harness(authenticator=authenticator())

    def test_retained_messages_stay_inside_their_account(self):
        for client_id, user, payload in (("a", "acme-1", b"acme"), ("g", "globex-1", b"g"),
                                         ("n", "plain", b"plain")):
            c, _ = connect(self.h, client_id, user)
            c.send(pub("status", payload, retain=True))
        for client_id, user, want in (("a2", "acme-2", [("status", b"acme")]),
                                      ("g2", "globex-1", [("status", b"g")]),
                                      ("n2", None, [("status", b"plain")])):
            c, packets = subscribed(self.h, client_id, user, "#")
            self.assertEqual([(p.topic, p.payload) for p in publishes(packets)], want)
            self.assertTrue(all(p.retain for p in publishes(packets)))

    def test_a_will_is_published_inside_its_account(self):
        acme, _ = subscribed(self.h, "a-sub", "acme-2", "status/#")
        plain, _ = subscribed(self.h, "n-sub", None, "#")
        dev, _ = connect(self.h, "dev", "acme-1", will=Will("status/dev", b"offline"))
        dev.lose()
        self.assertEqual(seen(acme), [("status/dev", b"offline")])
        self.assertEqual(seen(plain), [])
        self.assertEqual(self.h.store.messages[-1].topic, "$a/acme/status/dev")

    def test_a_will_outside_the_namespace_refuses_the_connect(self):
        c, connack = connect(self.h, "dev", "acme-1", will=Will("$SYS/dev", b"offline"))
        self.assertEqual(connack, Connack(False, 0x05))
        c, connack = connect(self.h, "n", "plain", will=Will("$a/acme/dev", b"forged"))
        self.assertEqual(connack, Connack(False, 0x05))
        self.assertEqual(self.h.broker.metrics.mqtt_namespace_denied["will"], 2)
        self.assertEqual(list(self.h.store.messages), [])


class PersistentReplayTests(TestCase):
    """A persistent session's offline queue is a cursor into ``messages``: after a
    restart it is rebuilt from rows holding (account, own topic), mounted again."""

    def test_the_replay_after_a_restart_keeps_the_mount(self):
        directory = make_dir(self)
        first = Appliance(self, directory, authenticator=authenticator())
        sub = first.client()
        sub.connect("sub", clean=False, username="acme-1", password=b"pw")
        sub.send(Subscribe(1, (("/v1.6/devices/#", 1),)))
        first.clock.advance(0)
        self.assertEqual(sub.received(), [Suback(1, (1,))])
        sub.lose()
        for client_id, user, payload in (("a", "acme-2", b"acme"), ("g", "globex-1", b"g"),
                                         ("n", "plain", b"plain")):
            c = first.client()
            c.connect(client_id, username=user, password=b"pw")
            c.send(pub("/v1.6/devices/x", payload, qos=1))
            self.assertEqual(c.received(), [Puback(1)])

        second = Appliance(self, directory, authenticator=authenticator())  # a crash
        back = second.client()
        self.assertEqual(back.connect("sub", clean=False, username="acme-1", password=b"pw"),
                         Connack(True, 0))
        self.assertEqual([(p.topic, p.payload) for p in publishes(back.received())],
                         [("/v1.6/devices/x", b"acme")])
        # The same client id in another account has no session there.
        other = second.client()
        self.assertEqual(other.connect("sub", clean=False, username="globex-1", password=b"pw"),
                         Connack(False, 0))

    def test_the_retained_set_read_back_after_a_restart_keeps_the_mount(self):
        directory = make_dir(self)
        first = Appliance(self, directory, authenticator=authenticator())
        for client_id, user, payload in (("a", "acme-1", b"acme"), ("n", "plain", b"plain")):
            c = first.client()
            c.connect(client_id, username=user, password=b"pw")
            c.send(pub("status", payload, qos=1, retain=True))
            self.assertEqual(c.received(), [Puback(1)])

        second = Appliance(self, directory, authenticator=authenticator())
        for client_id, user, want in (("a2", "acme-2", b"acme"), ("g", "globex-1", None),
                                      ("n2", "plain", b"plain")):
            c = second.client()
            c.connect(client_id, username=user, password=b"pw")
            c.send(Subscribe(1, (("#", 1),)))
            got = [(p.topic, p.payload) for p in publishes(c.received())]
            self.assertEqual(got, [] if want is None else [("status", want)])


class StaticAccountTests(TestCase):
    def test_a_static_user_with_an_account_is_admitted_as_the_accounts(self):
        auth = authenticator()
        self.assertEqual(self.successResultOf(auth.authenticate("c", "acme-1", b"pw")),
                         AuthResult(0, account="acme"))
        self.assertEqual(self.successResultOf(auth.authenticate("c", "plain", b"pw")), 0)
        self.assertEqual(self.successResultOf(auth.authenticate("c", "acme-1", b"no")), 4)
        self.assertEqual(self.successResultOf(auth.authenticate("c", None, None)), 0)


class KickTests(TestCase):
    def test_a_kick_closes_that_accounts_client_only(self):
        h = Harness(authenticator=authenticator())
        acme, _ = connect(h, "dev-1", "acme-1")
        globex, _ = connect(h, "dev-1", "globex-1")
        plain, _ = connect(h, "dev-1", "plain")
        self.assertTrue(h.broker.kick("dev-1", "banned", "globex"))
        self.assertEqual([c.closed for c in (acme, globex, plain)], [False, True, False])
        self.assertTrue(h.broker.taken_elsewhere("dev-1", "acme"))
        self.assertEqual([c.closed for c in (acme, plain)], [True, False])
