"""Builds the service tree that twistd runs.

One process for now: listeners feeding one broker. The process tree of DESIGN.md
(master, workers, ingest) will be assembled here too, from the same pieces.
"""
import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.broker.protocol import MQTTServerFactory
from mqttd.config import ConfigError
from mqttd.store.memory import InMemoryMessageStore

log = Logger()


def _endpoint(reactor, index, description):
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"server.listen[{index}]: bad endpoint {description!r}: {e}") from None


def _log_port(port, description):
    address = port.getHost()
    log.info(
        "mqttd listening on {description} ({host}:{port})",
        description=description,
        host=getattr(address, "host", address),
        port=getattr(address, "port", ""),
    )
    return port


class _Listener(StreamServerEndpointService):
    """A listener that fails start-up loudly if it cannot bind, and logs where it listens."""

    _raiseSynchronously = True

    def __init__(self, endpoint, factory, description):
        super().__init__(endpoint, factory)
        self.description = description

    def privilegedStartService(self):
        super().privilegedStartService()
        self._waitingForPort.addCallback(_log_port, self.description)


def build_service(config, reactor):
    """The MultiService for ``config``: state directory, broker, one service per listener."""
    try:
        os.makedirs(config.server.data_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"server.data_dir: cannot create {config.server.data_dir!r}: {e.strerror}") from None
    root = MultiService()
    broker = Broker(reactor, config.broker, InMemoryMessageStore(), StaticAuthenticator(config.auth))
    factory = MQTTServerFactory(broker, reactor)
    for index, description in enumerate(config.server.listen):
        _Listener(_endpoint(reactor, index, description), factory, description).setServiceParent(root)
    root.broker = broker
    return root
