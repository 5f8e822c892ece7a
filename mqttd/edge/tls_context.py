"""The certificate of an ``ssl:`` listener the master terminates TLS for, read at start.

Twisted's ``ssl:`` endpoint builds its CertificateOptions while it parses the string
(``endpoints._parseSSL``) and keeps it in a private field of the endpoint, so there is
no public way to take it from ``serverFromString``. This reads the same documented
options with the same defaults and builds the same CertificateOptions from
``twisted.internet.ssl``: ``privateKey`` (a PEM file, ``server.pem`` if unset, as in
Twisted), ``certKey`` (the certificate's PEM file, ``privateKey``'s by default),
``extraCertChain`` (PEM certificates from the CA to ``certKey``'s issuer),
``dhParameters`` and ``sslmethod``. The context is built here once, so a missing file,
a file that is no PEM, or a key that does not match its certificate stops start-up
with one line naming the listener's key, not at the first client's handshake.
"""
import re

from twisted.internet import ssl
from twisted.python.filepath import FilePath

from mqttd.errors import ConfigError

from .sockets import endpoint_arguments

__all__ = ["tls_options"]

_CERTIFICATE = re.compile(
    rb"(-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----)", re.DOTALL)


def _read(key, option, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {option}={path}: {e.strerror or e}") from None


def tls_options(key, description):
    """The CertificateOptions of ``description`` if it is an ``ssl:`` listener, None if
    it is another kind; ConfigError naming ``key`` and the option for a bad one."""
    kind, args = endpoint_arguments(key, description)
    if kind != "ssl":
        return None
    private_key = args.get("privateKey", "server.pem")
    cert_key = args.get("certKey", private_key)
    key_pem = _read(key, "privateKey", private_key)
    pem = _read(key, "certKey", cert_key) + b"\n" + key_pem
    try:
        certificate = ssl.PrivateCertificate.loadPEM(pem)
    except Exception as e:  # OpenSSL.crypto.Error, ValueError: not a PEM key and certificate
        raise ConfigError(f"{key}: cannot load the PEM key privateKey={private_key} with its "
                          f"certificate certKey={cert_key}: {_reason(e)}") from None
    options = {}
    if "extraCertChain" in args:
        path = args["extraCertChain"]
        chain = [ssl.Certificate.loadPEM(pem).original
                 for pem in _CERTIFICATE.findall(_read(key, "extraCertChain", path))]
        if not chain:
            raise ConfigError(f"{key}: extraCertChain={path} holds no PEM certificate")
        options["extraCertChain"] = chain
    if "dhParameters" in args:
        path = args["dhParameters"]
        _read(key, "dhParameters", path)  # a missing file: named here, not by OpenSSL
        try:
            ssl.SSL.Context(ssl.SSL.TLS_METHOD).load_tmp_dh(path.encode())
        except ssl.SSL.Error as e:
            raise ConfigError(f"{key}: dhParameters={path} holds no PEM Diffie-Hellman "
                              f"parameters: {_reason(e)}") from None
        options["dhParameters"] = ssl.DiffieHellmanParameters.fromFile(FilePath(path))
    if "sslmethod" in args:
        method = getattr(ssl.SSL, args["sslmethod"], None)
        if not isinstance(method, int) or not args["sslmethod"].endswith("_METHOD"):
            raise ConfigError(f"{key}: sslmethod={args['sslmethod']} is not an OpenSSL "
                              f"method (e.g. TLS_METHOD)")
        options["method"] = method
    try:
        context = ssl.CertificateOptions(privateKey=certificate.privateKey.original,
                                         certificate=certificate.original, **options)
        context.getContext()  # checks that the key matches the certificate, loads the DH file
    except Exception as e:
        raise ConfigError(f"{key}: cannot use privateKey={private_key} with "
                          f"certKey={cert_key}: {_reason(e)}") from None
    return context


def _reason(error):
    """OpenSSL's errors are lists of (library, function, reason) tuples: the reasons."""
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and all(isinstance(d, tuple) for d in details):
        return "; ".join(str(d[-1]) for d in details)
    return str(error) or type(error).__name__
