"""StaticAuthenticator: the CONNACK code for each credential case."""
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.config import AuthConfig, User


def _code(auth, username, password):
    results = []
    auth.authenticate("cid", username, password).addCallback(results.append)
    assert len(results) == 1, "StaticAuthenticator must answer at once"
    return results[0]


class StaticAuthenticatorTests(unittest.TestCase):
    users = (User("alice", "s3cret"), User("bob", "pässword"))

    def test_anonymous_allowed(self):
        auth = StaticAuthenticator(AuthConfig(allow_anonymous=True))
        self.assertEqual(_code(auth, None, None), 0)

    def test_anonymous_refused_not_authorized(self):
        auth = StaticAuthenticator(AuthConfig(allow_anonymous=False))
        self.assertEqual(_code(auth, None, None), 0x05)

    def test_valid_user(self):
        auth = StaticAuthenticator(AuthConfig(users=self.users))
        self.assertEqual(_code(auth, "alice", b"s3cret"), 0)
        self.assertEqual(_code(auth, "bob", "pässword".encode()), 0)

    def test_wrong_password(self):
        auth = StaticAuthenticator(AuthConfig(users=self.users))
        self.assertEqual(_code(auth, "alice", b"s3cret!"), 0x04)
        self.assertEqual(_code(auth, "alice", b""), 0x04)

    def test_missing_password(self):
        auth = StaticAuthenticator(AuthConfig(users=self.users))
        self.assertEqual(_code(auth, "alice", None), 0x04)

    def test_unknown_user(self):
        auth = StaticAuthenticator(AuthConfig(allow_anonymous=True, users=self.users))
        self.assertEqual(_code(auth, "mallory", b"s3cret"), 0x04)

    def test_username_checked_even_when_anonymous_allowed(self):
        auth = StaticAuthenticator(AuthConfig(allow_anonymous=True, users=self.users))
        self.assertEqual(_code(auth, "alice", b"nope"), 0x04)
