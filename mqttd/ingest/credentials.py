"""Who may POST to the ingest webhook: a bearer secret in the ``Authorization`` header.

The webhook writes straight into the database, and a forged row is worse than a lost
one (issue 11: rows forged under the next message keys made the broker acknowledge
messages stored nowhere). So every request carries ``Authorization: Bearer SECRET``,
checked before its body is buffered, with ``hmac.compare_digest`` (no timing hint of
how much of a guess was right). The built-in tier's secret is ``ingest.secret``, or one
made at start by ``new_secret`` and handed to the broker's own client in-process; it is
never logged.
"""
import hmac
import secrets

AUTHORIZATION = b"Authorization"
CHALLENGE = (b"WWW-Authenticate", b'Bearer realm="mqttd-ingest"')


def new_secret():
    """A fresh secret for the built-in tier (256 random bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def bearer(secret):
    """The ``Authorization`` value that carries ``secret`` (visible ASCII, checked by config)."""
    return b"Bearer " + secret.encode("ascii")


def authorized(headers, expected):
    """Whether ``headers`` (twisted.web Headers) carry exactly one ``expected`` value."""
    values = headers.getRawHeaders(AUTHORIZATION)
    if values is None or len(values) != 1:
        return False
    return hmac.compare_digest(values[0], expected)
