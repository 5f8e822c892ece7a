"""Listeners that fail start-up with one line naming their config key.

twistd prints a page of traceback for a port that cannot be bound; an operator needs
to know which key (``server.listen[0]``, ``ingest.listen``) and why (in use, no
permission, no such directory). 1883 is already taken by Debian's own mosquitto
on many machines, so this is the start-up error operators meet first.
"""
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.error import CannotListenError


class KeyedListener(StreamServerEndpointService):
    """Binds in ``privilegedStartService`` and raises at once if it cannot."""

    _raiseSynchronously = True

    def __init__(self, endpoint, factory, key, description):
        super().__init__(endpoint, factory)
        self.key = key
        self.description = description

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            error = e.socketError
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise SystemExit(
                f"mqttd: {self.key}: cannot listen on {self.description}: {reason}") from None
        except OSError as e:  # a unix socket: no such directory, no permission
            raise SystemExit(
                f"mqttd: {self.key}: cannot listen on {self.description}: "
                f"{e.strerror or e}") from None
