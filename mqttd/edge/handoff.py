"""The hand-off channel between the master and one worker: both ends.

The master accepts a client's socket itself, reads its CONNECT, and hands the fd plus
every byte it read to a worker over a UNIX stream socketpair (SCM_RIGHTS). It keeps its
own fd open until the worker acks, then closes it with close(2), never shutdown(2): the
worker holds the same socket, and a shutdown would show its client an EOF. The same
socket carries control messages both ways (a closed conn id, subscription interest) and
cross-worker publishes (FORWARD frames); handoff_wire.py has the frames.

The channel is split by end: ``channel_end`` (what both ends share: frames, control
messages, forwarded publishes and their backlog, loss; opening a channel),
``handoff_master`` (the window of hand-offs in flight) and ``handoff_worker`` (pairing
fds with frames, adopting, acking). This module names them all, for its importers.

Fds ride on bytes of the stream, not on frames of their own: the worker queues every fd it
receives and pairs the oldest with each complete hand-off frame. That is sound because
the master queues each fd (Twisted's ``sendFileDescriptor``) just before writing its
frame, and Twisted's UNIX transport sends queued fds first, one on each next unsent byte,
before any other byte: an fd never arrives after its frame's last byte, only earlier.
Twisted makes one sendmsg per fd (and the worker one recvmsg per fd: Linux ends a stream
read after a message that carried fds); benchmarks/bench_handoff.py measured 16,000 to
24,000 hand-offs/s on 2 shared cores that way (about 20 us of master CPU each), 3x the
5,000 connects/s the master must carry, so there is no batched sendmsg of our own.
The master caps hand-offs in flight per channel, in count and bytes, and queues a
bounded number behind (``handoff_master``).
"""
from .channel_end import ChannelEnd, ChannelLost, HandoffError, channel_socketpair, open_channel
from .handoff_master import (
    MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES, MAX_QUEUED, MAX_QUEUED_BYTES, HandoffQueueFull,
    HandoffRefused, MasterChannel,
)
from .handoff_wire import ChannelProtocolError
from .handoff_worker import MAX_UNPAIRED_FDS, WorkerChannel

__all__ = [
    "MAX_IN_FLIGHT", "MAX_IN_FLIGHT_BYTES", "MAX_QUEUED", "MAX_QUEUED_BYTES", "MAX_UNPAIRED_FDS",
    "ChannelEnd", "ChannelLost", "ChannelProtocolError", "HandoffError",
    "HandoffQueueFull", "HandoffRefused", "MasterChannel", "WorkerChannel",
    "channel_socketpair", "open_channel",
]
