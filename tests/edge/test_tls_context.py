"""An ``ssl:`` listener's certificate options, read at start: what works with Twisted's own
``ssl:`` endpoint works here, and a missing, unreadable or mismatched file is one
ConfigError naming the listener's key and the option."""
import datetime
import os

import twisted.test
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.trial import unittest

from mqttd.edge.sockets import bind_listener
from mqttd.edge.tls_context import tls_options
from mqttd.errors import ConfigError

PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
KEY = "server.listen[2]"


def _write(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _self_signed(folder, name):
    """(key path, certificate path) of a fresh self-signed EC certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return (_write(folder, f"{name}.key", key_pem),
            _write(folder, f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM)))


class TLSOptionsTests(unittest.TestCase):
    def refused(self, description):
        with self.assertRaises(ConfigError) as e:
            tls_options(KEY, description)
        message = str(e.exception)
        self.assertTrue(message.startswith(f"{KEY}: "), message)
        self.assertNotIn("\n", message)
        return message

    def test_not_an_ssl_listener(self):
        self.assertIsNone(tls_options(KEY, "tcp:1883:interface=127.0.0.1"))

    def test_one_pem_with_key_and_certificate(self):
        options = tls_options(KEY, f"ssl:8883:interface=127.0.0.1:privateKey={PEM}")
        self.assertIsInstance(options, ssl.CertificateOptions)

    def test_separate_key_and_certificate_files_and_a_chain(self):
        folder = self.mktemp()
        os.makedirs(folder)
        key, cert = _self_signed(folder, "broker")
        _, ca = _self_signed(folder, "ca")
        options = tls_options(KEY, f"ssl:8883:privateKey={key}:certKey={cert}:"
                                   f"extraCertChain={ca}")
        self.assertIsInstance(options, ssl.CertificateOptions)

    def test_a_missing_file_names_the_option(self):
        self.assertIn("cannot read privateKey=/no/such/key.pem: No such file or directory",
                      self.refused("ssl:8883:privateKey=/no/such/key.pem"))
        self.assertIn("cannot read certKey=/no/cert.pem",
                      self.refused(f"ssl:8883:privateKey={PEM}:certKey=/no/cert.pem"))
        self.assertIn("cannot read extraCertChain=/no/chain.pem",
                      self.refused(f"ssl:8883:privateKey={PEM}:extraCertChain=/no/chain.pem"))
        self.assertIn("cannot read dhParameters=/no/dh.pem",
                      self.refused(f"ssl:8883:privateKey={PEM}:dhParameters=/no/dh.pem"))

    def test_a_file_that_is_not_pem(self):
        folder = self.mktemp()
        os.makedirs(folder)
        junk = _write(folder, "junk.pem", b"not a key\n")
        self.assertIn(f"cannot load the PEM key privateKey={junk} with its certificate",
                      self.refused(f"ssl:8883:privateKey={junk}"))
        self.assertIn(f"extraCertChain={junk} holds no PEM certificate",
                      self.refused(f"ssl:8883:privateKey={PEM}:extraCertChain={junk}"))
        self.assertIn(f"dhParameters={junk} holds no PEM Diffie-Hellman parameters",
                      self.refused(f"ssl:8883:privateKey={PEM}:dhParameters={junk}"))

    def test_a_key_that_does_not_match_its_certificate(self):
        folder = self.mktemp()
        os.makedirs(folder)
        key, _ = _self_signed(folder, "one")
        _, other = _self_signed(folder, "two")
        message = self.refused(f"ssl:8883:privateKey={key}:certKey={other}")
        self.assertIn(f"privateKey={key} with its certificate certKey={other}", message)
        self.assertIn("keys do not match", message)

    def test_bad_arguments(self):
        self.assertIn("sslmethod=FOO is not an OpenSSL method",
                      self.refused(f"ssl:8883:privateKey={PEM}:sslmethod=FOO"))
        self.assertIn("unknown endpoint argument 'verify'",
                      self.refused(f"ssl:8883:privateKey={PEM}:verify=yes"))


class BindTests(unittest.TestCase):
    def test_an_ssl_listener_binds_as_tcp(self):
        sock = bind_listener(KEY, f"ssl:0:interface=127.0.0.1:privateKey={PEM}:backlog=9")
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")
        self.assertFalse(sock.getblocking())
