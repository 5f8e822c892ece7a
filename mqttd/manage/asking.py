"""A question from the master to every worker, and their answers, over their channels.

What the operator asks the master (the manhole's ``trace(client_id)``) may be known only
to a worker; the master asks them all at once and answers with what came back within
``timeout``, so a hung worker delays the answer by a second and never blocks it. A
question is a channel message ``ask`` ``{"id": N, "question": NAME, ...}``; the worker
answers ``answer`` ``{"id": N, "answer": {...}}`` (or ``{"id": N, "error": "..."}``).
Both are small: at most ``max_pending`` questions wait at once (more fail at once), and
a worker refuses to send an answer over ``MAX_ANSWER`` bytes (the channel carries 4 MiB
a message; an answer must not crowd out the hand-offs behind it).

Generic on purpose (the trace's is its first question): ``Asker`` in the master,
``Answerer`` in each worker, questions by name.
"""
import itertools
import json

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

__all__ = ["MAX_ANSWER", "Asker", "Answerer", "TooManyQuestions"]

log = Logger()

MAX_ANSWER = 1024 * 1024
"""Bytes of JSON an answer may be."""


class TooManyQuestions(Exception):
    """``max_pending`` questions are already waiting for their answers."""


class _Question:
    __slots__ = ("done", "waiting", "answers", "timer")

    def __init__(self, done, waiting):
        self.done = done
        self.waiting = waiting  # slots not answered yet
        self.answers = {}
        self.timer = None


class Asker:
    """The master's side. ``channels()`` gives {slot: channel} of the live workers
    (anything with ``send(kind, payload)``); the master hands ``answered(slot,
    payload)`` each ``answer`` message. ``metrics`` gets ``manage_questions_unanswered``."""

    def __init__(self, clock, channels, metrics, timeout=1.0, max_pending=64):
        self._clock = clock
        self._channels = channels
        self._metrics = metrics
        self._timeout = timeout
        self._max_pending = max_pending
        self._ids = itertools.count(1)
        self._pending = {}  # id -> _Question

    def ask(self, question, **fields):
        """A Deferred of {slot: answer dict} from every live worker that answered
        ``question`` within the timeout (an error answer is {"error": text})."""
        if len(self._pending) >= self._max_pending:
            return fail(TooManyQuestions(f"{len(self._pending)} questions already wait"))
        ident = next(self._ids)
        payload = dict(fields, id=ident, question=question)
        asked = set()
        for slot, channel in list(self._channels().items()):
            if channel.send("ask", payload):
                asked.add(slot)
        pending = _Question(Deferred(), asked)
        if not asked:
            pending.done.callback({})
            return pending.done
        self._pending[ident] = pending
        pending.timer = self._clock.callLater(self._timeout, self._expired, ident)
        return pending.done

    def answered(self, slot, payload):
        ident = payload.get("id") if isinstance(payload, dict) else None
        pending = self._pending.get(ident)
        if pending is None or slot not in pending.waiting:
            return  # late (timed out) or not ours
        pending.waiting.discard(slot)
        answer = payload.get("answer")
        pending.answers[slot] = (answer if isinstance(answer, dict)
                                 else {"error": str(payload.get("error", "no answer"))})
        if not pending.waiting:
            pending.timer.cancel()
            self._finish(ident)

    def _expired(self, ident):
        pending = self._pending.get(ident)
        if pending is not None:
            self._metrics.manage_questions_unanswered += len(pending.waiting)
            log.warn("workers {slots} did not answer {question} within {timeout} s",
                     slots=sorted(pending.waiting), question=ident, timeout=self._timeout)
            self._finish(ident)

    def _finish(self, ident):
        pending = self._pending.pop(ident)
        pending.done.callback(pending.answers)


class Answerer:
    """A worker's side: ``handlers`` maps a question's name to ``fn(payload) -> dict``;
    ``send(kind, payload)`` writes to the master. Hand it each ``ask`` message."""

    def __init__(self, send, handlers):
        self._send = send
        self._handlers = dict(handlers)

    def asked(self, payload):
        if not isinstance(payload, dict) or "id" not in payload:
            log.warn("worker: a question without an id from the master, ignored")
            return
        reply = {"id": payload["id"]}
        handler = self._handlers.get(payload.get("question"))
        if handler is None:
            reply["error"] = f"unknown question {payload.get('question')!r}"
        else:
            try:
                answer = handler(payload)
            except Exception as e:
                log.failure("worker: answering {question} failed",
                            question=payload.get("question"))
                reply["error"] = f"{type(e).__name__}: {e}"
            else:
                size = len(json.dumps(answer))
                if size > MAX_ANSWER:
                    reply["error"] = f"answer of {size} bytes is over {MAX_ANSWER}"
                else:
                    reply["answer"] = answer
        self._send("answer", reply)
