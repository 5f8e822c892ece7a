"""The ingest child: the built-in tier (webhook, group commit, SQLite), once per tree.

SQLite has one writer, so every worker posts to this one process. Its listening socket
is bound by the master and inherited (``listen_fd``): the address the workers post to
is known before any child starts and stays the same across this child's restarts, and
while it restarts the workers' connects wait in that socket's backlog instead of being
refused.
"""
import os
import socket

from twisted.application.service import MultiService
from twisted.internet.defer import succeed

from mqttd.metrics import Metrics
from mqttd.service import add_ingest
from mqttd.store.data_dir import make_data_dir
from mqttd.tree.ingest_link import MasterLink


class AdoptedPort:
    """A server endpoint whose ``listen`` adopts an inherited listening socket."""

    def __init__(self, reactor, fd, family):
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def listen(self, factory):
        port = self._reactor.adoptStreamPort(self._fd, self._family, factory)
        os.close(self._fd)  # adoptStreamPort works on a duplicate
        return succeed(port)


def build_ingest(config, reactor, brief):
    root = MultiService()
    root.metrics = metrics = Metrics()
    make_data_dir(config)
    family = socket.AF_INET6 if brief["listen_family"] == "inet6" else socket.AF_INET
    endpoint = AdoptedPort(reactor, brief["listen_fd"], family)
    root.ingest = add_ingest(root, config, reactor, metrics, endpoint, config.ingest.secret)
    if "channel_fd" in brief:  # after the tier: "ready" once it has started
        MasterLink(reactor, brief["channel_fd"], metrics).setServiceParent(root)
    return root
