"""The worker's end of a hand-off channel (``edge.handoff``): it pairs each fd it
receives with its hand-off frame, adopts the socket, and acks.

Fds arrive on bytes of the stream, never after their frame's last byte (``edge.handoff``
says why): the worker queues each fd it receives and pairs the oldest with each
complete hand-off frame, holding at most ``MAX_UNPAIRED_FDS`` of them.
"""
import collections
import os

from twisted.internet import defer, interfaces
from twisted.logger import Logger
from zope.interface import implementer

from .channel_end import ChannelEnd
from .handoff_wire import (
    FORWARD, HANDOFF, HANDOFF_AS, HANDOFF_FROM, MESSAGE, ChannelProtocolError, Handoff, encode_ack,
)

__all__ = ["MAX_UNPAIRED_FDS", "WorkerChannel"]

# The namespace the lines had before the channel was split by end: operators filter by it.
log = Logger(namespace="mqttd.edge.handoff")

MAX_UNPAIRED_FDS = 1024
"""Fds a worker holds before their hand-off frames complete; the master sends at most
its window (256) ahead, so more means a broken master."""


@implementer(interfaces.IFileDescriptorReceiver)
class WorkerChannel(ChannelEnd):
    """The worker's end: pair each received fd with its hand-off frame, ``adopt`` it,
    ack; control messages both ways.

    ``adopt(fd, preread, conn_id)`` owns ``fd`` (it must close it, whatever happens):
    returning acks the master that the socket is adopted, raising tells it it is not; a
    Deferred result acks when it fires. A relayed client's hand-off (TLS) calls
    ``adopt(fd, preread, conn_id, peer)`` with its (host, port); one the master's gate
    judged passes ``decided=(account, client_id)`` too. ``mqttd.edge.adopt.adopt_into`` is the usual
    body of it.
    """

    _accepts = (HANDOFF, HANDOFF_FROM, HANDOFF_AS, MESSAGE, FORWARD)
    _end = "worker"

    def __init__(self, adopt, on_message=None, max_unpaired_fds=MAX_UNPAIRED_FDS,
                 **forwarding):
        super().__init__(on_message, **forwarding)
        self._adopt = adopt
        self._max_unpaired_fds = max_unpaired_fds
        self._fds = collections.deque()

    def fileDescriptorReceived(self, descriptor):
        if self._closing or self._lost is not None:
            os.close(descriptor)
            return
        self._fds.append(descriptor)
        if len(self._fds) > self._max_unpaired_fds:
            self._protocol_error(ChannelProtocolError(
                f"{len(self._fds)} file descriptors arrived ahead of their hand-off "
                f"frames (at most {self._max_unpaired_fds})"))

    @property
    def unpaired_fds(self):
        return len(self._fds)

    def _handle(self, value):
        if not isinstance(value, Handoff):
            return super()._handle(value)
        if not self._fds:
            self._protocol_error(ChannelProtocolError(
                f"hand-off frame for conn id {value.conn_id} came without a file descriptor"))
            return
        fd = self._fds.popleft()
        extra = () if value.peer is None else (value.peer,)
        decided = {} if value.decided is None else {"decided": value.decided}
        try:
            result = self._adopt(fd, value.preread, value.conn_id, *extra, **decided)
        except Exception as e:
            self._refused(e, value.conn_id)
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda _: self._ack(value.conn_id, True),
                                lambda failure: self._refused(failure.value, value.conn_id))
        else:
            self._ack(value.conn_id, True)

    def _refused(self, error, conn_id):
        log.debug("hand-off of conn {conn_id} not adopted: {error}",
                  conn_id=conn_id, error=error)
        self._ack(conn_id, False, f"{type(error).__name__}: {error}")

    def _ack(self, conn_id, adopted, reason=""):
        if self.writable:
            self._write(encode_ack(conn_id, adopted, reason))

    def _release(self, lost):
        while self._fds:
            os.close(self._fds.popleft())
