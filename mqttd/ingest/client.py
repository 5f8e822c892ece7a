"""The broker's side of the ingest webhook: an IMessageSink that POSTs batches.

This is the piece the incident's platform got wrong (an under-sized webhook timeout and
connection pool, and ACKs sent regardless). Here:

* ``submit(message, notify, token)`` calls ``notify`` (and ``store(message)``'s
  Deferred fires) only when the ingest tier answered 200 for a batch holding the
  message, i.e. after its COMMIT. The broker sends PUBACK / PUBREC from that call and
  from nowhere else.
* Messages are grouped into batches: a batch leaves when ``batch_size`` messages wait,
  or a body of ``max_body_size`` bytes, or ``batch_delay`` seconds after the first one
  (0: the next reactor turn, so one read's worth of publishes travels together). At
  most ``pool_size`` requests are in flight; while all are busy, new messages
  accumulate into the next, larger batch — group commit that grows with load instead
  of queueing tiny requests — but never into a body the webhook would refuse: a batch
  is cut before its size bound (``wire.size_bound``) passes ``max_body_size``.
* ``linger``: right after an answer, with no request in flight, the next batch waits
  (at most ``linger`` seconds) for the connections that answer just acknowledged.
  Clients that keep a window of messages in flight publish again the moment their
  PUBACKs arrive; without the wait the first of them leaves alone and the rest follow
  in a second request and a second COMMIT, every round trip. The wait is kept only
  while it pays: one that runs out turns it off, and it comes back once acknowledged
  connections are again seen publishing within ``linger`` of their answer. So a batch
  waits at most ``linger``, and traffic of devices that publish now and then rarely.
* Timeouts, connection errors, 429 and every 5xx are retried with exponential backoff
  and jitter, resending the same body: the same message keys, so the ingest tier
  stores each message once however often it is retried.
* Overload pauses, it does not refuse: past ``max_pending`` messages or
  ``max_pending_bytes`` (payload + topic) awaiting their commit, ``pressure`` says
  full, and the broker stops reading from the clients that publish; it says drained
  once both are below 90 % again. Messages the broker had already read are still
  taken, up to a hard ceiling of 125 % of either limit, which keeps memory bounded:
  past it a message is refused ("overload").
* A message that cannot be committed within ``ack_timeout`` of its arrival, a batch the
  webhook refuses (other 4xx), and anything over the hard ceiling are failed: the broker
  then closes that client's connection without acknowledging, and the device
  retransmits. Nothing is dropped silently: every outcome is counted, and
  ``received == committed + pending + rejected`` holds at every moment.
"""
import random
import weakref
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice
from operator import itemgetter

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from mqttd.ingest.credentials import AUTHORIZATION, bearer
from mqttd.ingest.http_client import WebhookURL
from mqttd.ingest.wire import (
    BODY_FRAME,
    CONTENT_TYPE,
    WireError,
    batch_size_bound,
    decode_result,
    encode_batch,
    size_bound,
)
from mqttd.store.sink import (
    ISubmittingMessageSink,
    StoreRejected,
)
from mqttd.metrics import Metrics
from mqttd.store.pressure import Pressure

__all__ = ["WebhookSink", "StoreRejected"]

log = Logger()


def _request_headers(secret, extra):
    """Every request's headers: Content-Type, ``Authorization: Bearer`` when there is a
    ``secret``, and the ``extra`` (name, value) pairs an ingestion service of your own
    may need (``webhook.headers``). Built once: the same for every request."""
    headers = {b"Content-Type": [CONTENT_TYPE.encode("ascii")]}
    if secret:
        headers[AUTHORIZATION] = [bearer(secret)]
    for name, value in extra:
        headers.setdefault(name.encode("ascii"), []).append(value.encode("ascii"))
    return headers


# Refusals (4xx but 413 and 429: nothing stored, retrying cannot help) by what they
# mean for an operator; counted in ``rejected`` under these reasons.
_REFUSALS = {401: "unauthorized", 403: "unauthorized", 409: "key conflict"}
_REFUSED = frozenset(_REFUSALS.values()) | {"refused"}


class _RetryableStatus(Exception):
    """An HTTP answer worth retrying (429, 5xx); may carry the server's Retry-After."""

    def __init__(self, code, retry_after):
        super().__init__(f"HTTP {code}")
        self.code = code
        self.retry_after = retry_after


class _Refused(Exception):
    """The webhook answered a 4xx other than 429: retrying the same body cannot help."""

    def __init__(self, code, body):
        super().__init__(f"http {code}: {body}")
        self.code = code


class _NoAddress(Exception):
    """The URL is not known yet (the built-in ingest tier is still binding); retryable."""


class _AnswerBody(Protocol):
    """An answer's body, read whole; cancelling ``finished`` aborts the connection.

    treq's ``content()`` cannot be cancelled: a request cut short by its timeout after
    the headers came kept its connection open until the server gave up, outside
    ``pool_size``, and every retry opened one more. Here the timeout that cancels the
    request also ends the read and its connection.
    """

    def __init__(self):
        self._chunks = []
        self.finished = Deferred(self._cancel)

    def _cancel(self, _):
        transport = self.transport
        if transport is None:
            return
        # Abort, not close: over https loseConnection only sends close_notify and waits
        # for the server's, which a server stalled mid-answer never sends. Twisted hands
        # the body a proxy of the connection (_newclient.TransportProxyProducer) with no
        # abortConnection of its own; the connection it proxies has one.
        connection = getattr(transport, "_producer", None)
        abort = getattr(connection, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    def dataReceived(self, data):
        self._chunks.append(data)

    def connectionLost(self, reason):
        if self.finished.called:  # cancelled: the close that caused is no news
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)


def _answer_body(response):
    """A Deferred of ``response``'s whole body (cancellable: see _AnswerBody)."""
    body = _AnswerBody()
    response.deliverBody(body)
    return body.finished


def _describe(error):
    """A one-line reason for a failed request (treq wraps causes in lists of Failures)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(f"{r.type.__name__}: {r.getErrorMessage()}" for r in reasons)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_payloads = itemgetter(4)  # Message.payload
_topics = itemgetter(3)  # Message.topic


def _held_bytes(messages):
    """What ``max_pending_bytes`` counts of ``messages``: payload bytes + topic length."""
    return sum(map(len, map(_payloads, messages))) + sum(map(len, map(_topics, messages)))


@attrs.define(slots=True)
class _Batch:
    """Messages travelling together, their waiters, and the one body every try sends."""

    messages: list
    waiters: list  # (notify, token) per message, in the same order
    body: bytes
    deadline: float
    held: int  # _held_bytes(messages): released from pending_bytes when it settles
    attempt: int = 0

    @classmethod
    def of(cls, messages, waiters, deadline, attempt=0, held=None):
        if held is None:
            held = _held_bytes(messages)
        return cls(messages, waiters, encode_batch(messages), deadline, held, attempt)


@implementer(ISubmittingMessageSink)
class WebhookSink:
    """IMessageSink over the ingest webhook. ``http`` is a treq HTTPClient (or StubTreq).

    ``secret``: sent as ``Authorization: Bearer`` with every request (the built-in
    tier's, or ``webhook.secret``); None: no Authorization header. ``config.headers``
    go with every request either way.
    """

    def __init__(self, clock, config, http, url, random=random.random, secret=None,
                 metrics=None):
        self._clock = clock
        self._config = config
        self._http = http
        self._headers = _request_headers(secret, config.headers)
        # Rendered once (treq would render it on every request); None until the
        # built-in ingest tier has bound its port.
        self._url = None if url is None else WebhookURL.parse(url)
        self._random = random
        self._messages = []  # waiting for the next batch
        self._waiters = []
        self._waiting_held = 0  # _held_bytes of them
        # A batch is cut before its body could pass max_body_size (see _cut); one
        # leaves at once when about a body's worth waits (payloads grow by 4/3).
        self._max_body = config.max_body_size
        self._body_due = config.max_body_size * 3 // 4
        # (sequence number, time) of the 1st, (batch_size+1)th, ... message since the
        # waiting list was last empty: one clock reading per batch_size messages. A
        # batch's deadline counts from the latest stamp at or before its first message,
        # so no message waits longer than ack_timeout (a cut short by the body budget
        # leaves messages between stamps: their deadline is then a little early).
        self._arrivals = deque()
        self._appended = 0  # sequence number of the next message to wait
        self._stamp_due = 0  # sequence number of the next message to stamp
        # Overload (see the module docstring): full at either limit, refused at the
        # hard ceiling (125 %), drained at 90 % of both.
        self._full_pending = config.max_pending
        self._full_bytes = config.max_pending_bytes
        self._hard_pending = config.max_pending + config.max_pending // 4
        self._hard_bytes = config.max_pending_bytes + config.max_pending_bytes // 4
        self._low_pending = config.max_pending * 9 // 10
        self._low_bytes = config.max_pending_bytes * 9 // 10
        self.pressure = Pressure()
        self._drain_call = None
        self._full_logged_at = None
        self._ready = deque()  # batches due for a (re)try, waiting for a free slot
        self._backoff = {}  # id(batch) -> (DelayedCall, batch): retries not yet due
        self._timer = None
        self._watch = None  # fails waiting work at its deadline (_watch_deadlines)
        self._busy = 0  # requests in flight
        # linger: who the last answer acknowledged and has not published since (ids
        # of their ``notify``: no reference keeps a closed connection alive; an id
        # reused meanwhile can only end a wait early), when that answer came, whether
        # such clients lately came back in time, and whether a batch is held for them.
        self._expected = set()
        self._gone = weakref.WeakValueDictionary()  # id -> notify forgotten (forget)
        self.forget(_fire_deferreds)  # store()'s Deferreds: no connection behind them
        self._answered_at = 0.0
        self._prompt = True
        self._holding = False
        self._stopped = False
        # Accounting, in the process's registry (``webhook_*``): submitted ==
        # committed + pending + sum(rejected.values()) at every moment.
        self.metrics = Metrics() if metrics is None else metrics

    # -- IMessageSink -------------------------------------------------------------------

    def store(self, message):
        """The Deferred form of ``submit``: one Deferred for this message alone."""
        d = Deferred()
        self.submit(message, _fire_deferreds, d)
        return d

    def submit(self, message, notify, token):
        """ISubmittingMessageSink: ``notify(tokens, failure)`` once committed or not.

        A batch settles its messages with one ``notify`` call per run of consecutive
        messages with the same ``notify`` (one connection's read, usually), instead of
        a Deferred per message: the broker's hot path.
        """
        metrics = self.metrics
        metrics.webhook_submitted += 1
        if (self._stopped or metrics.webhook_pending >= self._hard_pending
                or metrics.webhook_pending_bytes >= self._hard_bytes):
            reason = "stopping" if self._stopped else "overload"
            metrics.webhook_rejected[reason] += 1
            self._notify(notify, [token], StoreRejected(reason))
            return
        held = len(message.payload) + len(message.topic)
        metrics.webhook_pending = pending = metrics.webhook_pending + 1
        metrics.webhook_pending_bytes = pending_bytes = metrics.webhook_pending_bytes + held
        if ((pending >= self._full_pending or pending_bytes >= self._full_bytes)
                and not self.pressure.full):
            self._fill()
        self._waiting_held += held
        messages = self._messages
        sequence = self._appended
        self._appended = sequence + 1
        if sequence >= self._stamp_due:
            self._arrivals.append((sequence, self._clock.seconds()))
            self._stamp_due = sequence + self._config.batch_size
        messages.append(message)
        self._waiters.append((notify, token))
        expected = self._expected
        if expected and id(notify) in expected:
            expected.discard(id(notify))
            if not expected:
                self._all_back()
        if len(messages) >= self._config.batch_size or self._waiting_held >= self._body_due:
            self._kick()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._config.batch_delay, self._on_timer)

    # -- overload: pressure ------------------------------------------------------------

    def _fill(self):
        """A limit is reached: the broker pauses publishers (synchronously: the one
        whose message this is stops right after it)."""
        self.metrics.webhook_overloads += 1
        now = self._clock.seconds()
        if self._full_logged_at is None or now - self._full_logged_at >= 10.0:
            self._full_logged_at = now  # at most every 10 s: it may come and go often
            log.warn("overload: {pending} messages, {bytes} bytes awaiting commit; "
                     "publishers paused until it drains", pending=self.metrics.webhook_pending,
                     bytes=self.metrics.webhook_pending_bytes)
        self.pressure.fill()

    def _released(self):
        """Pending messages settled: once at most 90 % of both limits, say drained.

        On the next reactor turn, not from inside a settle: the broker then resumes
        connections, which submit what they had read meanwhile.
        """
        if (self.pressure.full and self._drain_call is None
                and self._below_low_water()):
            self._drain_call = self._clock.callLater(0, self._drain)

    def _below_low_water(self):
        metrics = self.metrics
        return (metrics.webhook_pending <= self._low_pending
                and metrics.webhook_pending_bytes <= self._low_bytes)

    def _drain(self):
        self._drain_call = None
        if self._below_low_water():
            self.pressure.drain()

    def _all_back(self):
        """Every connection the last answer acknowledged has published again."""
        if self._clock.seconds() - self._answered_at <= self._config.linger:
            self._prompt = True
        if self._holding:
            # Send on the next turn (batch_delay), not now: the rest of this read's
            # messages are still to be submitted.
            self._holding = False
            self._restart_timer(self._config.batch_delay)

    def _settle(self, batch, error):
        """Tell every submitter of ``batch`` the outcome (``error`` None: committed).

        Consecutive messages of one submitter (the same ``notify`` object) are settled
        with one call; every call gets its own Failure, so no submitter can change what
        another one sees.
        """
        run_notify = run = None
        for notify, token in batch.waiters:
            if notify is run_notify:
                run.append(token)
            else:
                if run is not None:
                    self._notify(run_notify, run, error)
                run_notify, run = notify, [token]
        if run is not None:
            self._notify(run_notify, run, error)

    @staticmethod
    def _notify(notify, tokens, error):
        try:
            notify(tokens, None if error is None else Failure(error))
        except Exception:
            # A broken submitter must not keep the others of its batch unanswered.
            log.failure("store notify failed for {n} messages", n=len(tokens))

    # -- batching and sending ------------------------------------------------------------

    def _on_timer(self):
        self._timer = None
        if self._holding:
            self._ran_out()
        self._kick()

    def _ran_out(self):
        """The linger passed before everyone acknowledged came back: stop waiting for
        such clients until they are seen coming back in time again."""
        self._holding = False
        self._prompt = False
        self._expected = set()

    def _restart_timer(self, delay):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._on_timer)

    def _hold(self):
        """Whether the next fresh batch should wait for the acknowledged connections;
        if so, (re)arm the timer that ends the wait."""
        if not (self._prompt and self._expected and self._busy == 0
                and len(self._messages) < self._config.batch_size
                and self._waiting_held < self._body_due):
            self._holding = False  # nothing to wait for (any timer left only kicks)
            return False
        left = self._answered_at + self._config.linger - self._clock.seconds()
        if left <= 0:
            self._ran_out()  # they did not come back in time (unheld: a busy reactor)
            return False
        if not self._holding:
            self._holding = True
            self._restart_timer(left)
        return True

    def _cut(self):
        """The first waiting messages as a batch: up to batch_size, and no more than
        fit in max_body_size by their size bounds (at least one: the config checks
        that any one message fits)."""
        messages, waiters = self._messages, self._waiters
        n = min(len(messages), self._config.batch_size)
        if batch_size_bound(islice(messages, n)) > self._max_body:
            # Near the budget: the longest run whose bounds, one by one, fit.
            bounds = accumulate(map(size_bound, islice(messages, n)), initial=BODY_FRAME)
            n = max(1, bisect_right(list(bounds), self._max_body) - 1)
        arrivals = self._arrivals
        deadline = arrivals[0][1] + self._config.ack_timeout
        held = None
        if n == len(messages):
            held = self._waiting_held  # all of them: no need to count again
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
        batch = _Batch.of(messages, waiters, deadline, held=held)
        self._waiting_held -= batch.held
        return batch

    def _kick(self):
        """Fill free request slots: retries first, then fresh batches."""
        limit = self._config.pool_size
        while self._busy < limit and not self._stopped:
            if self._ready:
                batch = self._ready.popleft()
            elif self._messages and not self._hold():
                batch = self._cut()
            else:
                break
            # One clock reading decides both: read twice, a batch could pass this check
            # and then get a negative timeout (which callLater refuses, leaking the slot).
            left = batch.deadline - self._clock.seconds()
            if left <= 0:
                self._reject(batch, "ack timeout")
                continue
            self._send(batch, left)
        if self._messages and self._timer is None and self._busy < limit and not self._stopped:
            self._timer = self._clock.callLater(self._config.batch_delay, self._on_timer)
        if self._ready or self._messages:
            if self._watch is None:
                self._watch_deadlines()
        elif self._watch is not None:
            self._watch.cancel()  # nothing waits
            self._watch = None

    def _watch_deadlines(self, deadline=None):
        """Fail waiting work at its deadline, not when a slot frees.

        Retries wait in ``_ready`` and fresh messages in ``_messages`` while every slot
        is busy; a hung request holds its slot up to ``request_timeout``, so waiting
        for the slot could answer a client long after ``ack_timeout``. One timer: armed
        for the earliest deadline while work waits (moved earlier when a batch with an
        earlier one comes back: ``deadline``), cancelled by ``_kick`` once nothing waits.
        """
        if self._stopped:
            return
        now = self._clock.seconds()
        if self._watch is not None:
            if deadline is not None and deadline < self._watch.getTime():
                self._watch.reset(max(0.0, deadline - now))
            return
        deadlines = [batch.deadline for batch in self._ready]
        if self._messages:
            deadlines.append(self._arrivals[0][1] + self._config.ack_timeout)
        if deadlines:
            self._watch = self._clock.callLater(max(0.0, min(deadlines) - now), self._expire)

    def _expire(self):
        self._watch = None
        now = self._clock.seconds()
        overdue = [batch for batch in self._ready if batch.deadline <= now]
        if overdue:
            self._ready = deque(batch for batch in self._ready if batch.deadline > now)
            for batch in overdue:
                self._reject(batch, "ack timeout")
        while self._messages and self._arrivals[0][1] + self._config.ack_timeout <= now:
            self._reject(self._cut(), "ack timeout")
        self._watch_deadlines()

    def _answered(self, batch):
        """Remember whom ``batch``'s answer acknowledged, for ``linger``."""
        if self._config.linger > 0:
            expected = set(map(id, map(itemgetter(0), batch.waiters)))
            # Gone ones never publish again, nor do the notifies that stand for no
            # connection (store()'s Deferreds, the broker's wills: forgotten at once).
            # A handful of ids here, so look them up one by one.
            gone = self._gone
            if gone:
                expected = {key for key in expected if key not in gone}
            self._expected = expected
            self._answered_at = self._clock.seconds()

    def forget(self, notify):
        """The submitter behind ``notify`` is gone (its connection closed): it will not
        submit again, so ``linger`` must not wait for it.

        Its messages still in flight settle as usual, and until they have, an answer
        may carry them: ``_answered`` leaves it out. Kept by id, weakly: the entry goes
        with the notify, so no later submitter can inherit the id.
        """
        key = id(notify)
        self._gone[key] = notify
        expected = self._expected
        if key in expected:
            expected.discard(key)
            if not expected and self._holding:
                # Everyone else is back: the held batch leaves (linger stays as it was).
                self._holding = False
                self._restart_timer(self._config.batch_delay)

    def _send(self, batch, left):
        """POST ``batch``; ``left`` (> 0) is the time to its deadline."""
        self._busy += 1
        if self._url is None:
            d = fail(_NoAddress("the built-in ingest tier has no address yet"))
        else:
            # A webhook answers, it does not redirect: no RedirectAgent layer per request;
            # unbuffered: the body is read once, by _answer_body (no buffering wrapper).
            d = self._http.post(self._url, data=batch.body, headers=self._headers,
                                allow_redirects=False, unbuffered=True)
        d.addCallback(self._read)
        # A hung request must not outlive the batch's deadline: the client is owed an
        # answer (its connection closed, unacknowledged) by ack_timeout, not later.
        d.addTimeout(min(self._config.request_timeout, left), self._clock)
        d.addCallbacks(self._committed, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))
        d.addErrback(self._bug, batch)

    def _read(self, response):
        code = response.code
        body = _answer_body(response)
        if code == 200:
            return body
        if code == 429 or code >= 500:
            retry_after = response.headers.getRawHeaders(b"Retry-After", [None])[0]
            # Read to the end, under the request's own timeout, so the connection can
            # go back to the pool; then retry.
            return body.addBoth(self._retryable, code, retry_after)
        return body.addCallback(self._refused, code)

    @staticmethod
    def _retryable(result, code, retry_after):
        if isinstance(result, Failure) and result.check(CancelledError):
            return result  # cut short by the timeout: that is the reason to report
        raise _RetryableStatus(code, retry_after)

    @staticmethod
    def _refused(body, code):
        raise _Refused(code, body[:200].decode("utf-8", "replace"))

    def _committed(self, body, batch):
        self._busy -= 1
        n = len(batch.messages)
        try:
            result = decode_result(body, n)
        except WireError as e:
            # Not one message of the batch is acknowledged: the answer may be hiding a
            # partial rejection (mqttd.ingest.wire.decode_result).
            self._reject(batch, "bad response", detail=str(e))
        else:
            metrics = self.metrics
            metrics.webhook_committed += n
            metrics.webhook_pending -= n
            metrics.webhook_pending_bytes -= batch.held
            metrics.webhook_already_stored += result.duplicates
            self._answered(batch)
            self._settle(batch, None)
            self._released()
        self._kick()

    def _failed(self, failure, batch):
        self._busy -= 1
        error = failure.value
        if self._stopped:
            # Nothing is sent any more: a retry or the halves of a 413 would wait forever.
            self._reject(batch, "stopping", detail=_describe(error))
        elif isinstance(error, _Refused):
            if error.code == 413 and len(batch.messages) > 1:
                # Too big for the webhook's max_body_size: halve it and try again at
                # once, rather than refusing messages that fit on their own.
                self._split(batch)
            else:
                log.error("webhook refused a batch of {n}: {reason}", n=len(batch.messages),
                          reason=str(error))
                self._reject(batch, _REFUSALS.get(error.code, "refused"), detail=str(error))
        else:
            self._retry(batch, error)
        self._kick()

    def _retry(self, batch, error):
        """Back off exponentially with jitter, then requeue; give up at the deadline."""
        config = self._config
        # The exponent stops growing once past any useful backoff: 2 ** attempt as a
        # float overflows after ~1,000 retries (an hour-long ack_timeout can see more).
        delay = min(config.retry_max, config.retry_initial * 2.0 ** min(batch.attempt, 64))
        delay *= 0.5 + 0.5 * self._random()  # jitter: spread retries of many batches
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), config.retry_max))
            except ValueError:
                pass
        if self._clock.seconds() + delay >= batch.deadline:
            self._reject(batch, "ack timeout", detail=_describe(error))
            return
        batch.attempt += 1
        self.metrics.webhook_retried += 1
        if batch.attempt == 1:
            log.warn("webhook batch of {n} failed ({error}); retrying", n=len(batch.messages),
                     error=_describe(error))
        self._backoff[id(batch)] = (self._clock.callLater(delay, self._requeue, batch), batch)

    def _split(self, batch):
        half = len(batch.messages) // 2
        halves = [
            _Batch.of(messages, waiters, batch.deadline, batch.attempt)
            for messages, waiters in ((batch.messages[:half], batch.waiters[:half]),
                                      (batch.messages[half:], batch.waiters[half:]))
        ]
        self._ready.extendleft(reversed(halves))  # first half first: receive order
        self._watch_deadlines(batch.deadline)

    def _requeue(self, batch):
        del self._backoff[id(batch)]
        self._ready.append(batch)
        self._watch_deadlines(batch.deadline)
        self._kick()

    def _reject(self, batch, reason, detail=None):
        n = len(batch.messages)
        metrics = self.metrics
        metrics.webhook_rejected[reason] += n
        metrics.webhook_pending -= n
        metrics.webhook_pending_bytes -= batch.held
        self._released()
        if reason not in _REFUSED:  # logged as errors by _failed
            log.warn("{n} messages not stored: {reason} {detail}", n=n, reason=reason,
                     detail=detail or "")
        self._settle(batch, StoreRejected(reason))

    def _bug(self, failure, batch):
        log.failure("webhook store bug with a batch of {n}", failure, n=len(batch.messages))

    # -- life cycle ----------------------------------------------------------------------

    def set_url(self, url):
        """Where to POST from now on (the built-in ingest tier reports its bound address)."""
        self._url = WebhookURL.parse(url)
        self._kick()

    @property
    def url(self):
        """Where batches go, as text; None until the built-in ingest tier has bound."""
        return None if self._url is None else self._url.to_text()

    def stop(self):
        """Refuse new messages; fail those not yet sent (their clients retransmit)."""
        self._stopped = True
        self._holding = False
        self._expected = set()
        for timer in (self._timer, self._watch, self._drain_call):
            if timer is not None:
                timer.cancel()
        self._timer = self._watch = self._drain_call = None
        for call, batch in list(self._backoff.values()):  # retries not yet due
            call.cancel()
            self._reject(batch, "stopping")
        self._backoff.clear()
        while self._ready:
            self._reject(self._ready.popleft(), "stopping")
        while self._messages:  # more than one batch_size of them, too
            self._reject(self._cut(), "stopping")


def _fire_deferreds(deferreds, failure):
    """``notify`` for ``WebhookSink.store``: fire each message's own Deferred."""
    if failure is None:
        for d in deferreds:
            d.callback(None)
    else:
        error = failure.value  # as before: one exception, a Failure per Deferred
        for d in deferreds:
            d.errback(error)
