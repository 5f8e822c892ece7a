"""Whether the next batch waits for the connections an answer just acknowledged: Linger.

Right after an answer, with no request in flight, the next batch waits (at most
``linger`` seconds) for the connections that answer just acknowledged. Clients that keep
a window of messages in flight publish again the moment their PUBACKs arrive; without
the wait the first of them leaves alone and the rest follow in a second request and a
second COMMIT, every round trip. The wait is kept only while it pays: one that runs out
turns it off, and it comes back once acknowledged connections are again seen publishing
within ``linger`` of their answer. So a batch waits at most ``linger``, and traffic of
devices that publish now and then rarely.

Submitters are known by the id of their ``notify``: no reference keeps a closed
connection alive, and an id reused meanwhile can only end a wait early.
"""
import weakref
from operator import itemgetter

__all__ = ["Linger"]

_notifies = itemgetter(0)  # of a batch's (notify, token) waiters


class Linger:
    """``send_in(delay)`` (re)arms the webhook client's batch timer: a held batch leaves
    when it fires (``timer_fired``) or sooner, once everyone is back.

    ``expected`` (the ids of the submitters the last answer acknowledged and not seen
    since) is read on the hot path, once per message, so it is a plain attribute: while
    it is empty, as it is whenever nobody is waited for, a submit skips ``published``.
    Only this object changes it.
    """

    def __init__(self, clock, linger, batch_delay, send_in):
        self._clock = clock
        self._linger = linger
        self._batch_delay = batch_delay
        self._send_in = send_in
        # Who the last answer acknowledged and has not published since, when that answer
        # came, whether such clients lately came back in time, and whether a batch is
        # held for them.
        self.expected = set()
        self._gone = weakref.WeakValueDictionary()  # id -> notify forgotten (forget)
        self._answered_at = 0.0
        self._prompt = True
        self._holding = False

    def answered(self, waiters):
        """Remember whom an answer acknowledged: ``waiters`` are its (notify, token)s."""
        if self._linger > 0:
            expected = set(map(id, map(_notifies, waiters)))
            # Gone ones never publish again, nor do the notifies that stand for no
            # connection (store()'s Deferreds, the broker's wills: forgotten at once).
            # A handful of ids here, so look them up one by one.
            gone = self._gone
            if gone:
                expected = {key for key in expected if key not in gone}
            self.expected = expected
            self._answered_at = self._clock.seconds()

    def published(self, notify):
        """The submitter behind ``notify`` published again (once per message: cheap
        while nobody is expected)."""
        expected = self.expected
        if expected and id(notify) in expected:
            expected.discard(id(notify))
            if not expected:
                self._all_back()

    def forget(self, notify):
        """The submitter behind ``notify`` is gone (its connection closed): it will not
        submit again, so the wait must not be for it.

        Its messages still in flight settle as usual, and until they have, an answer
        may carry them: ``answered`` leaves it out. Kept by id, weakly: the entry goes
        with the notify, so no later submitter can inherit the id.
        """
        key = id(notify)
        self._gone[key] = notify
        expected = self.expected
        if key in expected:
            expected.discard(key)
            if not expected and self._holding:
                # Everyone else is back: the held batch leaves (linger stays as it was).
                self._holding = False
                self._send_in(self._batch_delay)

    def hold(self, may_wait):
        """Whether the next fresh batch should wait (``may_wait``: no request is in
        flight and less than a full batch waits); if so, (re)arm the timer that ends
        the wait."""
        if not (may_wait and self._prompt and self.expected):
            self._holding = False  # nothing to wait for (any timer left only kicks)
            return False
        left = self._answered_at + self._linger - self._clock.seconds()
        if left <= 0:
            self._ran_out()  # they did not come back in time (unheld: a busy reactor)
            return False
        if not self._holding:
            self._holding = True
            self._send_in(left)
        return True

    def timer_fired(self):
        """The batch timer fired: a wait still on ran out."""
        if self._holding:
            self._ran_out()

    def stop(self):
        self._holding = False
        self.expected = set()

    def _all_back(self):
        """Every connection the last answer acknowledged has published again."""
        if self._clock.seconds() - self._answered_at <= self._linger:
            self._prompt = True
        if self._holding:
            # Send on the next turn (batch_delay), not now: the rest of this read's
            # messages are still to be submitted.
            self._holding = False
            self._send_in(self._batch_delay)

    def _ran_out(self):
        """The linger passed before everyone acknowledged came back: stop waiting for
        such clients until they are seen coming back in time again."""
        self._holding = False
        self._prompt = False
        self.expected = set()
