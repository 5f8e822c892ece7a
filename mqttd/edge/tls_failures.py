"""Why a TLS connection failed, as a short stable key: counted, and logged once per failure.

A failed handshake is otherwise silent: OpenSSL's error reaches only the protocol's
``connectionLost``, and nothing counts it. An operator needs to tell apart a device
that speaks plain MQTT to the TLS port (``not_tls``), one that never finishes its
handshake within ``broker.idle_timeout`` (``timeout``), one whose TLS does not match
ours, in version, ciphers or messages (``protocol``), one that refuses our
certificate or sends a bad one (``certificate``), one that closes halfway (``closed``,
a port scanner or a health check does), and anything else (``other``). A relay that
breaks after the handshake (the master relays a TLS client's plaintext to its worker,
``edge.relay``) is counted apart: a TLS error inside the connection (``tls``), a side
that did not finish closing within the close grace (``close_timeout``), or another
error on either side (``other``). A peer that simply goes is no error.

Each failure is counted in ``metrics.edge_tls_handshake_failed`` or ``edge_tls_relay_errors``
under its key, and logged with the peer's IP, the listener's config key, the key and
OpenSSL's reason strings (never key material) through the per-address
``LogRateLimit``, as the door's refusals are, so a flood cannot flood the journal.
"""
from OpenSSL import SSL
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.logger import Logger

__all__ = ["TLSFailures", "HandshakeWatch", "handshake_failure", "relay_failure", "NOT_TLS",
           "TIMEOUT", "PROTOCOL", "CERTIFICATE", "CLOSED", "OTHER", "RELAY_TLS",
           "CLOSE_TIMEOUT"]

log = Logger()

# edge_tls_handshake_failed{reason}
NOT_TLS = "not_tls"
TIMEOUT = "timeout"
PROTOCOL = "protocol"
CERTIFICATE = "certificate"
CLOSED = "closed"
OTHER = "other"
# edge_tls_relay_errors{reason}, beside OTHER
RELAY_TLS = "tls"
CLOSE_TIMEOUT = "close_timeout"

# OpenSSL's reason strings (lower case, across 1.1 to 4.0) for bytes that are no TLS
# record at all: plain MQTT (0x10 ...) reads as a "wrong version number".
_NOT_TLS_REASONS = ("wrong version number", "http request", "https proxy request",
                    "packet length too long", "unknown protocol", "record layer failure")
# ... and for a certificate refused by either side ("tlsv1 alert unknown ca": the
# client does not trust ours; "certificate verify failed": we do not trust theirs).
_CERTIFICATE_REASONS = ("certificate", "unknown ca")


def _openssl_reasons(error):
    """The reason strings of an OpenSSL.SSL.Error (a list of (library, function,
    reason) tuples; a SysCallError has (errno, text))."""
    details = error.args[0] if error.args else None
    if isinstance(details, list):
        return [str(entry[-1]) for entry in details if isinstance(entry, tuple) and entry]
    return [str(arg) for arg in error.args[1:2]]


def _tls_error(failure):
    """(key, detail) of an OpenSSL error: ``not_tls``, ``certificate`` or ``protocol``."""
    reasons = _openssl_reasons(failure.value)
    detail = "; ".join(reasons) or "TLS error"
    lowered = [reason.lower() for reason in reasons]
    if any(marker in reason for reason in lowered for marker in _NOT_TLS_REASONS):
        return NOT_TLS, detail
    if any(marker in reason for reason in lowered for marker in _CERTIFICATE_REASONS):
        return CERTIFICATE, detail
    return PROTOCOL, detail


def handshake_failure(failure):
    """(key, detail) for a connection lost with ``failure`` before its handshake ended;
    None if we closed it ourselves (an abort: the caller knows why, a timeout or not)."""
    if failure is not None and failure.check(ConnectionAborted):  # (a ConnectionLost)
        return None
    if failure is None or failure.check(ConnectionDone, ConnectionLost):
        return CLOSED, "closed by the peer during the handshake"
    if failure.check(SSL.Error):
        return _tls_error(failure)
    return OTHER, failure.getErrorMessage()


def relay_failure(failure):
    """(key, detail) for a relayed side lost with ``failure``; None for no error: a
    clean close, a peer that went (reset, EOF) or our own abort."""
    if failure is None or failure.check(ConnectionDone, ConnectionLost, ConnectionAborted):
        return None
    if failure.check(SSL.Error):
        return RELAY_TLS, _tls_error(failure)[1]
    return OTHER, failure.getErrorMessage()


class TLSFailures:
    """The counters and log lines of one TLS listener's failures.

    ``metrics`` is the process's Metrics, ``log_rate`` its per-address LogRateLimit,
    ``listener`` the listener's config key (``server.listen[1]``).
    """

    def __init__(self, metrics, log_rate, listener):
        self._metrics = metrics
        self._log_rate = log_rate
        self.listener = listener

    def handshake_failed(self, host, reason, detail):
        """The TLS handshake of a client from ``host`` (its IP; None for a unix
        socket) failed for ``reason`` (a key above); ``detail`` says more, for the log."""
        self._metrics.edge_tls_handshake_failed[reason] += 1
        peer = host or "unix socket"
        if self._log_rate.allow(peer):
            log.info("TLS handshake failed from {peer} on {listener}: {reason} ({detail})",
                     peer=peer, listener=self.listener, reason=reason, detail=detail)

    def relay_broken(self, host, side, reason, detail):
        """The relay of a TLS client from ``host`` broke on ``side`` ("client" or
        "worker") for ``reason`` (``tls``, ``close_timeout``, ``other``)."""
        self._metrics.edge_tls_relay_errors[reason] += 1
        peer = host or "unix socket"
        if self._log_rate.allow(peer):
            log.info("TLS relay of {peer} on {listener} broke on the {side} side: "
                     "{reason} ({detail})", peer=peer, listener=self.listener, side=side,
                     reason=reason, detail=detail)


class HandshakeWatch:
    """The single process's handshakes (``server.workers = 0``): Twisted's own TLS on an
    ``ssl:`` port, the broker's protocol inside it, ``edge.guard`` between the two.

    There the broker's connect timeout (``broker.idle_timeout``, from the accept) is
    what closes a handshake that never ends, by an abort: an abort before the handshake
    ended, at least ``idle_timeout`` after the accept, is a ``timeout``; an earlier one
    is ours for another reason (a refusal, a stop) and no handshake failure.
    """

    def __init__(self, clock, idle_timeout, failures):
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._failures = failures

    def accepted(self):
        """The time to give ``lost`` for a connection accepted now."""
        return self._clock.seconds()

    def lost(self, host, accepted_at, reason):
        """The connection from ``host`` accepted at ``accepted_at`` was lost with
        ``reason`` before its handshake ended."""
        failed = handshake_failure(reason)
        if failed is None:
            if self._clock.seconds() - accepted_at < self._idle_timeout:
                return
            failed = TIMEOUT, f"not done within {self._idle_timeout:g} s"
        self._failures.handshake_failed(host, *failed)
