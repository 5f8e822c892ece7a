"""The master asks its workers what only they know, over the channel each already has.

The master knows every connection's address, client id and account (its door and its
gate); a worker alone knows its sessions (subscriptions, messages in flight, queued).
The manhole's ``clients()`` asks every live worker at once: an ``ask`` message
``{"id": N, "question": "clients", "args": {...}}``, answered with an ``answer``
message ``{"id": N, "answer": {...}}`` (or ``"error": "..."``). Ids make answers
matchable whatever their order; an answer not awaited (late, from the wrong worker) is
dropped.

Bounded: a question waits ``timeout`` seconds at most (a busy or stuck worker makes the
operator wait that long, never for ever), at most ``MAX_PENDING`` wait at once, and a
worker bounds its answer itself (``Answerer``: each handler cuts what it returns to
``MAX_ANSWER_BYTES``; the channel would refuse a frame past 4 MiB). The outcome of every
question is counted (``manage_questions``). Handlers are registered by name on both
sides, so other questions (a worker's trace window) plug in beside ``clients``.
"""
import itertools
import json

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

__all__ = ["ANSWER_TIMEOUT", "Answerer", "MAX_PENDING", "Questions", "Unanswered"]

log = Logger()

ANSWER_TIMEOUT = 2.0
"""Seconds the master waits for a worker's answer."""

MAX_PENDING = 64
"""Questions awaiting an answer at once, all workers together."""

MAX_ANSWER_BYTES = 2 * 1024 * 1024
"""The largest answer a worker sends as JSON; a bigger one is replaced by an error."""


class Unanswered:
    """What a worker's question came to when it brought no answer: ``reason`` says why
    (``timeout``, ``lost``, ``refused``, or the worker's own error)."""

    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f"<Unanswered: {self.reason}>"


class Questions:
    """The master's side. ``channels()`` gives {process name: channel} of the live
    workers (anything with ``send(kind, payload)``); ``answered(process, payload)`` is
    fed every ``answer`` message from a worker."""

    def __init__(self, clock, channels, metrics, timeout=ANSWER_TIMEOUT,
                 max_pending=MAX_PENDING):
        self._clock = clock
        self._channels = channels
        self._metrics = metrics
        self._timeout = timeout
        self._max_pending = max_pending
        self._ids = itertools.count(1)
        self._pending = {}  # id -> (process, Deferred, timer)

    def ask_all(self, question, args):
        """Deferred of {process: answer, or Unanswered} from every live worker."""
        asked = sorted(self._channels().items())
        if not asked:
            d = Deferred()
            d.callback({})
            return d
        names = [name for name, _ in asked]
        waiting = DeferredList([self.ask(name, channel, question, args)
                                for name, channel in asked])
        return waiting.addCallback(
            lambda results: {name: value for name, (_, value) in zip(names, results)})

    def ask(self, process, channel, question, args):
        """Deferred of ``process``'s answer to ``question``, or an Unanswered; never fails."""
        d = Deferred()
        if len(self._pending) >= self._max_pending:
            self._metrics.manage_questions["refused"] += 1
            d.callback(Unanswered("refused: too many questions in flight"))
            return d
        ask_id = next(self._ids)
        payload = {"id": ask_id, "question": question, "args": args}
        if not channel.send("ask", payload):
            self._metrics.manage_questions["lost"] += 1
            d.callback(Unanswered("lost: its channel is closed"))
            return d
        timer = self._clock.callLater(self._timeout, self._expired, ask_id)
        self._pending[ask_id] = (process, d, timer)
        return d

    def answered(self, process, payload):
        """A worker's ``answer`` message."""
        ask_id = payload.get("id") if isinstance(payload, dict) else None
        entry = self._pending.get(ask_id) if isinstance(ask_id, int) else None
        if entry is None or entry[0] != process:
            log.info("{process}: an answer nobody waits for (late, or not ours), dropped",
                     process=process)
            return
        del self._pending[ask_id]
        _, d, timer = entry
        timer.cancel()
        if "error" in payload:
            self._metrics.manage_questions["error"] += 1
            d.callback(Unanswered(f"error: {payload['error']}"))
            return
        self._metrics.manage_questions["answered"] += 1
        d.callback(payload.get("answer"))

    def gone(self, process):
        """``process`` died or its channel broke: its questions end now, unanswered."""
        for ask_id, (name, d, timer) in list(self._pending.items()):
            if name == process:
                del self._pending[ask_id]
                timer.cancel()
                self._metrics.manage_questions["lost"] += 1
                d.callback(Unanswered("lost: the worker went"))

    def _expired(self, ask_id):
        _, d, _ = self._pending.pop(ask_id)
        self._metrics.manage_questions["timeout"] += 1
        d.callback(Unanswered(f"timeout: no answer within {self._timeout:g} s"))


class Answerer:
    """A worker's side: ``asked(payload)`` for each ``ask`` message; the answer goes
    back through ``send(kind, payload)``. ``handlers``: {question: fn(args) -> JSON-ready
    value}; more with ``handle``."""

    def __init__(self, send, handlers=None, max_bytes=MAX_ANSWER_BYTES):
        self._send = send
        self._handlers = dict(handlers or {})
        self._max_bytes = max_bytes

    def handle(self, question, handler):
        self._handlers[question] = handler

    def asked(self, payload):
        ask_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(ask_id, int):
            log.warn("a question from the master without an id, ignored")
            return
        question = payload.get("question")
        args = payload.get("args") or {}
        handler = self._handlers.get(question)
        if handler is None or not isinstance(args, dict):
            self._send("answer", {"id": ask_id, "error": f"unknown question {question!r}"})
            return
        try:
            answer = handler(args)
            size = len(json.dumps(answer))
        except Exception as e:
            log.failure("answering the master's {question!r} failed", question=question)
            self._send("answer", {"id": ask_id, "error": f"{type(e).__name__}: {e}"})
            return
        if size > self._max_bytes:
            self._send("answer", {"id": ask_id, "error": f"answer of {size} bytes is over "
                                                         f"{self._max_bytes}"})
            return
        self._send("answer", {"id": ask_id, "answer": answer})
