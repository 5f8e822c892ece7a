"""The channel between the master and the ingest child: "ready", then "metrics" each second.

The ingest child had no channel: the master only handed it its listening socket. The
tree's figures need its counters (commits, rows, requests), and /healthz needs to know
it is up, so it gets a socketpair like a worker's, with the same framing
(``edge.channel_end``: length-prefixed JSON messages, bounded, no fds). The same frames
rather than a pipe of lines or a scrape of its webhook: no second parser, no HTTP client
in the master, and the manhole's questions to the ingest child (issue 14) can ride on it
later. Its end is fd 4 of the child (``channel_fd`` in its brief).

A lost channel stops the ingest child, as it stops a worker: a master that cannot hear
it would call it down for good; the supervisor starts a fresh one (a clean stop commits
what it accepted first).
"""
from twisted.application.service import MultiService
from twisted.logger import Logger

from mqttd.edge.channel_end import ChannelEnd, channel_socketpair, open_channel
from mqttd.manage.reporter import MetricsReporter

__all__ = ["IngestLink", "MasterLink"]

log = Logger()


class IngestLink:
    """The master's end: ``open()`` for each spawn of the child, ``gone()`` at its exit.
    ``up`` while the current run has said "ready" and its channel holds."""

    def __init__(self, reactor, tree_metrics, name):
        self._reactor = reactor
        self._metrics = tree_metrics
        self._name = name
        self._channel = None
        self.up = False

    def open(self):
        """A new channel for the run being spawned: returns the child's end (a socket,
        to map into the child and close once spawned)."""
        ours, theirs = channel_socketpair()
        channel = ChannelEnd(on_message=lambda kind, payload: self._said(channel, kind, payload))
        open_channel(self._reactor, ours, channel)
        channel.when_lost().addBoth(lambda _: self._lost(channel))
        self._channel, self.up = channel, False
        self._metrics.started(self._name)
        return theirs

    def gone(self):
        """The child exited: it is down, and its run's counters are kept."""
        self.up = False
        self._metrics.gone(self._name)
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _said(self, channel, kind, payload):
        if kind == "metrics":
            self._metrics.report(self._name, payload)  # a late one of an old run adds up too
        elif kind == "ready":
            if channel is self._channel:
                self.up = True
        else:
            log.warn("{name}: unknown message {kind!r}", name=self._name, kind=kind)

    def _lost(self, channel):
        if channel is self._channel:
            self.up = False


class MasterLink(MultiService):
    """The ingest child's end, on its inherited ``fd``: says "ready" once started, then
    reports its registry; stops the child if the channel is lost."""

    def __init__(self, reactor, fd, metrics):
        super().__init__()
        self._reactor = reactor
        self._fd = fd
        self.channel = None
        MetricsReporter(reactor, metrics, self._send).setServiceParent(self)

    def _send(self, payload):
        return self.channel is not None and self.channel.send("metrics", payload)

    def startService(self):
        self.channel = ChannelEnd()
        open_channel(self._reactor, self._fd, self.channel)
        self.channel.when_lost().addBoth(self._lost)
        self.channel.send("ready", {})
        super().startService()

    def _lost(self, reason):
        if self.running:
            log.warn("ingest: the master's channel is gone; stopping")
            self._reactor.stop()
