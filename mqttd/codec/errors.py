"""The one error the codec raises for bad input.

Every violation of an MQTT 3.1.1 normative statement, every malformed or oversized
packet, becomes a ProtocolError with a human-readable reason. The broker catches exactly
this type, logs the reason and closes that one connection; anything else escaping the
codec is a bug in mqttd, not in the peer.
"""


class ProtocolError(Exception):
    """A peer broke the protocol.

    ``reason`` says what was wrong, for the log and the per-client trace.
    ``connack_code`` is set when the spec asks the server to answer with a CONNACK return
    code before closing (0x01 unacceptable protocol level, 0x02 identifier rejected).
    """

    def __init__(self, reason, connack_code=None):
        super().__init__(reason)
        self.reason = reason
        self.connack_code = connack_code
