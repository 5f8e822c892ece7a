"""The broker's side of the ingest webhook: an IMessageSink that POSTs batches.

This is the piece the incident's platform got wrong (an under-sized webhook timeout and
connection pool, and ACKs sent regardless). Here:

* ``submit(message, notify, token)`` calls ``notify`` (and ``store(message)``'s
  Deferred fires) only when the ingest tier answered 200 for a batch holding the
  message, i.e. after its COMMIT. The broker sends PUBACK / PUBREC from that call and
  from nowhere else (``mqttd.ingest.settle`` makes the calls).
* Messages are grouped into batches (``mqttd.ingest.batching``): a batch leaves when
  ``batch_size`` messages wait, or a body of ``max_body_size`` bytes, or
  ``batch_delay`` seconds after the first one (0: the next reactor turn, so one read's
  worth of publishes travels together). At most ``pool_size`` requests are in flight;
  while all are busy, new messages accumulate into the next, larger batch (group commit
  that grows with load instead of queueing tiny requests), but never into a body the
  webhook would refuse.
* ``linger`` (``mqttd.ingest.linger``): right after an answer, the next batch may wait
  briefly for the connections that answer just acknowledged, so a window of clients
  shares one COMMIT per round trip.
* Timeouts, connection errors, 429 and every 5xx are retried with exponential backoff
  and jitter, resending the same body (``mqttd.ingest.poster`` sends it and reads the
  answer): the same message keys, so the ingest tier stores each message once however
  often it is retried.
* Overload pauses, it does not refuse (``mqttd.ingest.overload``): past
  ``max_pending`` messages or ``max_pending_bytes`` the broker stops reading from the
  clients that publish; only past a hard ceiling is a message refused ("overload").
* A message that cannot be committed within ``ack_timeout`` of its arrival, a batch the
  webhook refuses (other 4xx), and anything over the hard ceiling are failed: the broker
  then closes that client's connection without acknowledging, and the device
  retransmits. Nothing is dropped silently: every outcome is counted, and
  ``received == committed + pending + rejected`` holds at every moment.
"""
import random
from collections import deque

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from mqttd.ingest.batching import WaitingMessages
from mqttd.ingest.linger import Linger
from mqttd.ingest.overload import PendingBudget
from mqttd.ingest.poster import Refused, WebhookPoster, describe
from mqttd.ingest.request_stats import RequestStats
from mqttd.ingest.settle import fire_deferreds, settle, tell
from mqttd.ingest.wire import WireError, decode_result
from mqttd.metrics import Metrics
from mqttd.store.sink import ISubmittingMessageSink, StoreRejected

__all__ = ["WebhookSink", "StoreRejected"]

log = Logger()

# Refusals (4xx but 413 and 429: nothing stored, retrying cannot help) by what they
# mean for an operator; counted in ``rejected`` under these reasons.
_REFUSALS = {401: "unauthorized", 403: "unauthorized", 409: "key conflict"}
_REFUSED = frozenset(_REFUSALS.values()) | {"refused"}


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
        self._poster = WebhookPoster(http, url, secret, config.headers)
        self._random = random
        self._waiting = WaitingMessages(clock, config.batch_size, config.max_body_size,
                                        config.ack_timeout)
        # Accounting, in the process's registry (``webhook_*``): submitted ==
        # committed + pending + sum(rejected.values()) at every moment.
        self.metrics = Metrics() if metrics is None else metrics
        self._budget = PendingBudget(clock, config.max_pending, config.max_pending_bytes,
                                     self.metrics)
        self.pressure = self._budget.pressure
        # Per request: outcome, latency, retries by cause, the pool in use.
        self._stats = RequestStats(clock, self.metrics, config.pool_size)
        self._linger = Linger(clock, config.linger, config.batch_delay, self._restart_timer)
        self._linger.forget(fire_deferreds)  # store()'s Deferreds: no connection behind them
        self._ready = deque()  # batches due for a (re)try, waiting for a free slot
        self._backoff = {}  # id(batch) -> (DelayedCall, batch): retries not yet due
        self._timer = None
        self._watch = None  # fails waiting work at its deadline (_watch_deadlines)
        self._busy = 0  # requests in flight
        self._stopped = False
        self._draining = False  # drain() called: no new message is taken
        self._drain_waiters = []  # drain()'s Deferreds, until drained
        self._drain_timer = None

    # -- IMessageSink -------------------------------------------------------------------

    def store(self, message):
        """The Deferred form of ``submit``: one Deferred for this message alone."""
        d = Deferred()
        self.submit(message, fire_deferreds, d)
        return d

    def submit(self, message, notify, token):
        """ISubmittingMessageSink: ``notify(tokens, failure)`` once committed or not.

        A batch settles its messages with one ``notify`` call per run of consecutive
        messages with the same ``notify`` (one connection's read, usually), instead of
        a Deferred per message: the broker's hot path.
        """
        self.metrics.webhook_submitted += 1
        held = len(message.payload) + len(message.topic)
        if self._stopped or self._draining or not self._budget.take(held):
            reason = "stopping" if self._stopped or self._draining else "overload"
            self.metrics.webhook_rejected[reason] += 1
            tell(notify, [token], StoreRejected(reason))
            return
        due = self._waiting.add(message, notify, token, held)
        linger = self._linger
        if linger.expected:
            linger.published(notify)
        if due:
            self._kick()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._config.batch_delay, self._on_timer)

    def forget(self, notify):
        """The submitter behind ``notify`` is gone (its connection closed): it will not
        submit again, so ``linger`` must not wait for it (``Linger.forget``)."""
        self._linger.forget(notify)

    # -- batching and sending ------------------------------------------------------------

    def _on_timer(self):
        self._timer = None
        self._linger.timer_fired()
        self._kick()

    def _restart_timer(self, delay):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._on_timer)

    def _kick(self):
        """Fill free request slots: retries first, then fresh batches."""
        limit = self._config.pool_size
        waiting = self._waiting
        while self._busy < limit and not self._stopped:
            if self._ready:
                batch = self._ready.popleft()
            elif waiting and not self._linger.hold(
                    self._busy == 0 and waiting.short_of_a_batch()):
                batch = waiting.cut()
            else:
                break
            # One clock reading decides both: read twice, a batch could pass this check
            # and then get a negative timeout (which callLater refuses, leaking the slot).
            left = batch.deadline - self._clock.seconds()
            if left <= 0:
                self._reject(batch, "ack timeout")
                continue
            self._send(batch, left)
        if waiting and self._timer is None and self._busy < limit and not self._stopped:
            self._timer = self._clock.callLater(self._config.batch_delay, self._on_timer)
        if self._ready or waiting:
            if self._watch is None:
                self._watch_deadlines()
        elif self._watch is not None:
            self._watch.cancel()  # nothing waits
            self._watch = None
        if self._drain_waiters:
            self._check_drained()

    def _watch_deadlines(self, deadline=None):
        """Fail waiting work at its deadline, not when a slot frees.

        Retries wait in ``_ready`` and fresh messages in ``_waiting`` while every slot
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
        if self._waiting:
            deadlines.append(self._waiting.deadline())
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
        waiting = self._waiting
        while waiting and waiting.deadline() <= now:
            self._reject(waiting.cut(), "ack timeout")
        self._watch_deadlines()
        if self._drain_waiters:
            self._check_drained()

    def _send(self, batch, left):
        """POST ``batch``; ``left`` (> 0) is the time to its deadline."""
        self._busy += 1
        started = self._stats.sent()
        d = self._poster.post(batch.body)
        # A hung request must not outlive the batch's deadline: the client is owed an
        # answer (its connection closed, unacknowledged) by ack_timeout, not later.
        d.addTimeout(min(self._config.request_timeout, left), self._clock)
        d.addCallbacks(self._committed, self._failed, callbackArgs=(batch, started),
                       errbackArgs=(batch, started))
        d.addErrback(self._bug, batch)

    def _committed(self, body, batch, started):
        self._busy -= 1
        n = len(batch.messages)
        try:
            result = decode_result(body, n)
        except WireError as e:
            self._stats.answered(started, "bad response")
            # Not one message of the batch is acknowledged: the answer may be hiding a
            # partial rejection (mqttd.ingest.wire.decode_result).
            self._reject(batch, "bad response", detail=str(e))
        else:
            self._stats.answered(started, "committed")
            metrics = self.metrics
            metrics.webhook_committed += n
            self._budget.release(n, batch.held)
            metrics.webhook_already_stored += result.duplicates
            if not self._draining:  # nobody publishes again while draining
                self._linger.answered(batch.waiters)
            settle(batch.waiters, None)
            self._budget.check_drained()
        self._kick()

    def _failed(self, failure, batch, started):
        self._busy -= 1
        error = failure.value
        self._stats.answered(started, "stopping" if self._stopped else
                             "refused" if isinstance(error, Refused) else "retryable")
        if self._stopped:
            # Nothing is sent any more: a retry or the halves of a 413 would wait forever.
            self._reject(batch, "stopping", detail=describe(error))
        elif isinstance(error, Refused):
            if error.code == 413 and len(batch.messages) > 1:
                # Too big for the webhook's max_body_size: halve it and try again at
                # once, rather than refusing messages that fit on their own.
                self._ready.extendleft(reversed(batch.halves()))  # first half first
                self._watch_deadlines(batch.deadline)
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
            self._reject(batch, "ack timeout", detail=describe(error))
            return
        batch.attempt += 1
        self._stats.retried(error)
        if batch.attempt == 1:
            log.warn("webhook batch of {n} failed ({error}); retrying", n=len(batch.messages),
                     error=describe(error))
        self._backoff[id(batch)] = (self._clock.callLater(delay, self._requeue, batch), batch)

    def _requeue(self, batch):
        del self._backoff[id(batch)]
        self._ready.append(batch)
        self._watch_deadlines(batch.deadline)
        self._kick()

    def _reject(self, batch, reason, detail=None):
        n = len(batch.messages)
        self.metrics.webhook_rejected[reason] += n
        self._budget.release(n, batch.held)
        self._budget.check_drained()
        if reason not in _REFUSED:  # logged as errors by _failed
            log.warn("{n} messages not stored: {reason} {detail}", n=n, reason=reason,
                     detail=detail or "")
        settle(batch.waiters, StoreRejected(reason))

    def _bug(self, failure, batch):
        log.failure("webhook store bug with a batch of {n}", failure, n=len(batch.messages))

    # -- life cycle ----------------------------------------------------------------------

    def set_url(self, url):
        """Where to POST from now on (the built-in ingest tier reports its bound address)."""
        self._poster.set_url(url)
        self._kick()

    @property
    def url(self):
        """Where batches go, as text; None until the built-in ingest tier has bound."""
        return self._poster.url

    def drain(self, timeout):
        """Take no new message; send every one already taken at once, and fire when each
        has its answer (committed: its client gets its PUBACK), or after ``timeout``
        seconds, when ``stop`` fails what is left. How a stop loses no work in flight."""
        d = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._drain_waiters.append(d)
        if not self._draining:
            self._draining = True
            self._linger.stop()  # nobody will publish again: no batch waits for them
            self._drain_timer = self._clock.callLater(timeout, self._drain_over)
        self._kick()
        return d

    def _check_drained(self):
        if self._busy or self._ready or self._waiting or self._backoff:
            return
        self._drained()

    def _drain_over(self):
        self._drain_timer = None
        log.warn("webhook: {n} requests still in flight at the end of the drain; "
                 "what was not committed is failed (its clients retransmit)", n=self._busy)
        self.stop()

    def _drained(self):
        waiters, self._drain_waiters = self._drain_waiters, []
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        for d in waiters:
            d.callback(None)

    def stop(self):
        """Refuse new messages; fail those not yet sent (their clients retransmit)."""
        self._stopped = True
        self._linger.stop()
        for timer in (self._timer, self._watch):
            if timer is not None:
                timer.cancel()
        self._timer = self._watch = None
        self._budget.stop()
        for call, batch in list(self._backoff.values()):  # retries not yet due
            call.cancel()
            self._reject(batch, "stopping")
        self._backoff.clear()
        while self._ready:
            self._reject(self._ready.popleft(), "stopping")
        waiting = self._waiting
        while waiting:  # more than one batch_size of them, too
            self._reject(waiting.cut(), "stopping")
        if self._drain_waiters:
            self._drained()

