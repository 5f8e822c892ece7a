"""Messages waiting for the next batch, and the batches cut from them.

A batch leaves when ``batch_size`` messages wait, or about a body of ``max_body_size``
bytes (payloads grow by 4/3 on the wire), or ``batch_delay`` after the first one; the
webhook client decides when. What is cut here never makes a body the webhook would
refuse: a batch ends before its size bound (``wire.size_bound``) passes
``max_body_size``. Each batch carries its deadline: ``ack_timeout`` after its first
message arrived, so no client waits longer than that for its answer.
"""
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice
from operator import itemgetter

import attrs

from mqttd.ingest.wire import BODY_FRAME, batch_size_bound, encode_batch, size_bound

__all__ = ["Batch", "WaitingMessages", "held_bytes"]

_payloads = itemgetter(4)  # Message.payload
_topics = itemgetter(3)  # Message.topic


def held_bytes(messages):
    """What ``max_pending_bytes`` counts of ``messages``: payload bytes + topic length."""
    return sum(map(len, map(_payloads, messages))) + sum(map(len, map(_topics, messages)))


@attrs.define(slots=True)
class Batch:
    """Messages travelling together, their waiters, and the one body every try sends."""

    messages: list
    waiters: list  # (notify, token) per message, in the same order
    body: bytes
    deadline: float
    held: int  # held_bytes(messages): released from pending_bytes when it settles
    attempt: int = 0

    @classmethod
    def of(cls, messages, waiters, deadline, attempt=0, held=None):
        if held is None:
            held = held_bytes(messages)
        return cls(messages, waiters, encode_batch(messages), deadline, held, attempt)

    def halves(self):
        """Two batches of the first and the second half (a body the webhook found too
        big), with this one's deadline and attempts."""
        half = len(self.messages) // 2
        return [Batch.of(messages, waiters, self.deadline, self.attempt)
                for messages, waiters in ((self.messages[:half], self.waiters[:half]),
                                          (self.messages[half:], self.waiters[half:]))]


class WaitingMessages:
    """The messages not yet in a batch, in arrival order, with their ``(notify, token)``.

    Arrival times are stamped once per ``batch_size`` messages (the 1st, the
    (batch_size+1)th, ... since the list was last empty): one clock reading per batch,
    not per message. A batch's deadline counts from the latest stamp at or before its
    first message (a cut short by the body budget leaves messages between stamps: their
    deadline is then a little early, never late).
    """

    def __init__(self, clock, batch_size, max_body_size, ack_timeout):
        self._clock = clock
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout
        self._max_body = max_body_size
        self._body_due = max_body_size * 3 // 4  # about a body's worth: leave at once
        self._messages = []
        self._waiters = []
        self._held = 0  # held_bytes of them
        self._arrivals = deque()  # (sequence number, time)
        self._appended = 0  # sequence number of the next message to wait
        self._stamp_due = 0  # sequence number of the next message to stamp

    def __len__(self):
        return len(self._messages)

    def add(self, message, notify, token, held):
        """Append a message of ``held`` bytes; True if a batch is due now."""
        self._held += held
        sequence = self._appended
        self._appended = sequence + 1
        if sequence >= self._stamp_due:
            self._arrivals.append((sequence, self._clock.seconds()))
            self._stamp_due = sequence + self._batch_size
        messages = self._messages
        messages.append(message)
        self._waiters.append((notify, token))
        return len(messages) >= self._batch_size or self._held >= self._body_due

    def short_of_a_batch(self):
        """Less than a full batch waits (in messages and in bytes): worth holding."""
        return len(self._messages) < self._batch_size and self._held < self._body_due

    def deadline(self):
        """When the first waiting message must have been answered (some must wait)."""
        return self._arrivals[0][1] + self._ack_timeout

    def cut(self):
        """The first waiting messages as a Batch: up to batch_size, and no more than fit
        in max_body_size by their size bounds (at least one: the config checks that any
        one message fits)."""
        messages, waiters = self._messages, self._waiters
        n = min(len(messages), self._batch_size)
        if batch_size_bound(islice(messages, n)) > self._max_body:
            # Near the budget: the longest run whose bounds, one by one, fit.
            bounds = accumulate(map(size_bound, islice(messages, n)), initial=BODY_FRAME)
            n = max(1, bisect_right(list(bounds), self._max_body) - 1)
        arrivals = self._arrivals
        deadline = arrivals[0][1] + self._ack_timeout
        held = None
        if n == len(messages):
            held = self._held  # all of them: no need to count again
            self._messages, self._waiters = [], []
            arrivals.clear()
            self._stamp_due = self._appended
        else:
            messages, self._messages = messages[:n], messages[n:]
            waiters, self._waiters = waiters[:n], waiters[n:]
            # The leftovers' deadline: the latest stamp at or before the first of them.
            first = self._appended - len(self._messages)
            while len(arrivals) > 1 and arrivals[1][0] <= first:
                arrivals.popleft()
        batch = Batch.of(messages, waiters, deadline, held=held)
        self._held -= batch.held
        return batch
