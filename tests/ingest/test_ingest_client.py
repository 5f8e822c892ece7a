"""The webhook client: batching, retry with backoff, deadlines, and accounting that adds up.

The ingest side is a twisted.web resource driven through treq's StubTreq, on a Clock
(the harness is in tests/support/webhook.py).
"""
import json

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web._newclient import TransportProxyProducer
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from mqttd.ingest.client import StoreRejected
from mqttd.ingest.poster import NoAddress
from mqttd.ingest.request_stats import retry_cause
from mqttd.ingest.wire import decode_batch
from mqttd.store.sink import ISubmittingMessageSink
from tests.support.messages import message
from tests.support.webhook import Harness


class StrictClock(Clock):
    """A Clock that, like the reactor, refuses a negative delay, and whose time moves on
    by ``step`` at every reading (real time passes between two reads of the clock)."""

    step = 0.0

    def seconds(self):
        now = super().seconds()
        self.rightNow += self.step
        return now

    def callLater(self, delay, *args, **kwargs):
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        return super().callLater(delay, *args, **kwargs)


class BatchingTests(unittest.TestCase):
    def test_nothing_fires_before_the_commit(self):
        h = Harness(self, script=[None])
        (r,) = h.submit(message(1))
        self.assertEqual(h.webhook.bodies, [])  # waits for the batch delay
        h.tick()
        self.assertEqual(len(h.webhook.bodies), 1)
        self.assertEqual(r, [])  # request sent, not answered: no ack
        self.assertEqual(h.store.metrics.webhook_pending, 1)
        h.assertAccounts()

    def test_one_turn_of_messages_is_one_batch(self):
        h = Harness(self)
        results = h.submit(*[message(n) for n in range(5)])
        h.tick()
        self.assertEqual(len(h.webhook.bodies), 1)
        self.assertEqual(results, [["ok"]] * 5)
        self.assertEqual(h.store.metrics.webhook_committed, 5)
        self.assertEqual(h.webhook.stored["k-3"], b"\x00payload-3")
        h.assertAccounts()

    def test_full_batch_leaves_at_once(self):
        h = Harness(self, batch_size=3, batch_delay=10.0)
        h.submit(*[message(n) for n in range(3)])
        self.assertEqual(len(h.webhook.bodies), 1)
        self.assertEqual(len(decode_batch(h.webhook.bodies[0])), 3)

    def test_batch_delay(self):
        h = Harness(self, batch_delay=0.5)
        h.submit(message(1))
        h.tick(0.4)
        self.assertEqual(h.webhook.bodies, [])
        h.tick(0.1)
        self.assertEqual(len(h.webhook.bodies), 1)

    def test_pool_size_bounds_requests_and_grows_batches(self):
        """With every slot busy, new messages wait and leave together in one bigger batch."""
        h = Harness(self, script=[None], pool_size=1, request_timeout=100.0)
        first = h.submit(message(1))
        h.tick()
        later = h.submit(*[message(n) for n in range(2, 6)])
        h.tick()
        self.assertEqual(len(h.webhook.bodies), 1)  # slot busy: nothing more sent
        request = h.webhook.hanging.pop()
        request.write(json.dumps({"received": 1, "inserted": 1, "duplicates": 0}).encode())
        request.finish()
        h.tick()
        self.assertEqual(first, [["ok"]])
        self.assertEqual(len(h.webhook.bodies), 2)
        self.assertEqual(len(decode_batch(h.webhook.bodies[1])), 4)
        self.assertEqual(later, [["ok"]] * 4)
        h.assertAccounts()


class RetryTests(unittest.TestCase):
    def test_5xx_is_retried_with_the_same_keys(self):
        h = Harness(self, script=[500, 502], retry_initial=0.1)
        (r,) = h.submit(message(1))
        h.tick()
        self.assertEqual(r, [])
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 1)
        h.tick(0.1)  # first backoff: 0.1 s
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 2)
        h.tick(0.1)
        self.assertEqual(r, [])
        h.tick(0.1)  # second backoff: 0.2 s
        self.assertEqual(r, ["ok"])
        self.assertEqual(len(h.webhook.bodies), 3)
        self.assertEqual(len(set(h.webhook.bodies)), 1)  # the same body, the same keys
        self.assertEqual(h.store.metrics.webhook_committed, 1)
        h.assertAccounts()

    def test_backoff_is_capped(self):
        h = Harness(self, script=[500] * 6, retry_initial=1.0, retry_max=2.0, ack_timeout=100.0)
        (r,) = h.submit(message(1))
        h.tick()
        for _ in range(6):
            h.tick(2.0)
        self.assertEqual(r, ["ok"])

    def test_a_long_outage_keeps_retrying_until_the_deadline(self):
        """More than a thousand retries (an hour-long ack_timeout, a short retry_max):
        the backoff stays at retry_max (2 ** attempt once overflowed a float and left
        the batch unsettled), and the batch still ends at its deadline or commits."""
        h = Harness(self, script=[500] * 1500, retry_initial=0.001, retry_max=0.5,
                    ack_timeout=3600.0)
        (r,) = h.submit(message(1))
        h.tick()
        for _ in range(1500):
            h.tick(0.5)
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 1500)
        self.assertEqual(r, ["ok"])
        (late,) = h.submit(message(2))
        h.webhook.script = [500] * 10_000
        for _ in range(7300):  # past its hour: rejected at the deadline, not stuck
            h.tick(0.5)
        self.assertEqual(late, ["ack timeout"])
        self.assertEqual((h.store.metrics.webhook_pending, h.store.metrics.webhook_rejected["ack timeout"]), (0, 1))
        h.assertAccounts()

    def test_503_honours_retry_after(self):
        h = Harness(self, script=[503], retry_initial=0.01)
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(0.5)
        self.assertEqual(r, [])  # Retry-After: 1 is honoured over the short backoff
        h.tick(0.5)
        self.assertEqual(r, ["ok"])

    def test_timeout_is_retried(self):
        h = Harness(self, script=[None], request_timeout=1.0, retry_initial=0.1)
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(1.0)  # request times out
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 1)
        h.tick(0.1)
        self.assertEqual(r, ["ok"])
        # A retry of a batch the server may already have committed stores nothing twice.
        self.assertEqual(list(h.webhook.stored), ["k-1"])

    def test_connection_refused_is_retried(self):
        attempts = []

        class Refusing:
            def __init__(self, real):
                self.real = real

            def post(self, *args, **kwargs):
                attempts.append(1)
                if len(attempts) < 3:
                    return fail(ConnectionRefusedError())
                return self.real.post(*args, **kwargs)

        h = Harness(self, retry_initial=0.1, http=Refusing)
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(0.1)
        h.tick(0.2)
        self.assertEqual(r, ["ok"])
        self.assertEqual(len(attempts), 3)

    def test_deadline_fails_without_ack(self):
        h = Harness(self, script=[500] * 100, retry_initial=1.0, retry_max=1.0, ack_timeout=3.0)
        (r,) = h.submit(message(1))
        for _ in range(5):
            h.tick(1.0)
        self.assertEqual(r, ["ack timeout"])
        self.assertEqual(h.store.metrics.webhook_rejected["ack timeout"], 1)
        self.assertEqual(h.store.metrics.webhook_pending, 0)
        h.assertAccounts()

    def test_deadline_reached_between_two_clock_readings(self):
        """The check against the deadline and the request's timeout read the clock once:
        read twice, a batch with 0.5 ms left passed the check, then got a negative
        timeout, which the reactor refuses; its slot leaked and it never settled."""
        clock = StrictClock()
        h = Harness(self, clock=clock, ack_timeout=0.01)
        (r,) = h.submit(message(1))  # deadline 0.01
        clock.rightNow, clock.step = 0.0085, 0.001  # the batch is cut at 0.0095
        h.tick()
        clock.step = 0.0
        self.assertEqual(r, ["ok"])
        (r,) = h.submit(message(2))  # the slot is free again
        h.tick()
        self.assertEqual(r, ["ok"])
        h.assertAccounts()

    def test_deadline_cuts_a_hung_request_short(self):
        """A request hanging longer than ack_timeout fails its messages at the deadline."""
        h = Harness(self, script=[None], request_timeout=100.0, ack_timeout=1.0)
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(0.9)
        self.assertEqual(r, [])
        h.tick(0.1)
        self.assertEqual(r, ["ack timeout"])
        h.assertAccounts()

    def test_messages_left_over_by_a_size_cut_keep_their_deadline(self):
        """A cut restarted the clock of the messages it left behind: m3 (arrived at
        t=1, ack_timeout 10) was still unanswered at t=20. Now no message waits longer
        than ack_timeout after it arrived (the leftovers take the oldest arrival)."""
        h = Harness(self, script=[None, None], batch_size=2, request_timeout=100.0,
                    ack_timeout=10.0, linger=0.0)
        (first,) = h.submit(message(0))
        h.tick()  # t=0: sent, hangs
        h.tick(1.0)
        rest = h.submit(*[message(n) for n in (1, 2, 3)])
        h.tick(9.0)  # t=10: m0 fails, [m1, m2] go out, m3 is left waiting
        self.assertEqual((first, rest), (["ack timeout"], [[], [], []]))
        h.tick(1.0)  # t=11: ack_timeout after m1..m3 arrived
        self.assertEqual(rest, [["ack timeout"]] * 3)
        self.assertEqual((h.store.metrics.webhook_pending, len(h.webhook.bodies)), (0, 2))
        h.assertAccounts()

    def test_a_message_left_over_late_is_not_failed_early(self):
        """The leftovers' deadline counts from the first leftover's own arrival, not
        from the oldest message of the batch cut before them (that failed steady
        traffic behind a backlog long before its ack_timeout)."""
        h = Harness(self, script=[None, None], batch_size=1, ack_timeout=10.0,
                    request_timeout=100.0, linger=0.0)
        h.submit(message(0))
        h.tick()  # t=0: m0 in flight, hangs
        h.tick(5.0)
        (m1,) = h.submit(message(1))  # waits for the slot
        h.tick(4.9)
        (m2,) = h.submit(message(2))  # t=9.9: waits behind m1
        h.tick(0.1)  # t=10: m0 fails; m1 goes out (deadline 15); m2 left over
        h.tick(5.0)  # t=15: m1 fails; m2 goes out with 4.9 s left, and commits
        self.assertEqual((m1, m2), (["ack timeout"], ["ok"]))
        h.assertAccounts()

    def test_a_retry_waiting_for_a_busy_slot_fails_at_its_deadline(self):
        """A retry that comes back while the only slot is busy (here with a request
        that may hang 5 s more) is failed at its deadline, not when the slot frees."""
        h = Harness(self, script=[500, None], request_timeout=5.0, ack_timeout=10.0,
                    retry_initial=9.5, retry_max=9.5, linger=0.0)
        (a,) = h.submit(message(1))
        h.tick()  # t=0: 500; back in 9.5 s
        h.tick(9.0)
        (b,) = h.submit(message(2))
        h.tick()  # t=9: b takes the slot and hangs until t=14
        h.tick(0.9)
        self.assertEqual(a, [])
        h.tick(0.1)  # t=10: a's deadline
        self.assertEqual((a, b), (["ack timeout"], []))
        h.tick(4.0)
        self.assertEqual(b, ["ack timeout"])  # request timeout, then nothing to retry into
        h.assertAccounts()

    def test_413_splits_the_batch_until_it_fits(self):
        h = Harness(self, script=[413, 413])
        results = h.submit(*[message(n) for n in range(4)])
        h.tick()
        self.assertEqual(results, [["ok"]] * 4)
        sizes = [len(decode_batch(body)) for body in h.webhook.bodies]
        self.assertEqual(sizes, [4, 2, 1, 1, 2])  # 4 refused, 2 refused, then halves fit
        self.assertEqual(sorted(h.webhook.stored), [f"k-{n}" for n in range(4)])
        self.assertEqual(h.store.metrics.webhook_rejected, {})
        h.assertAccounts()

    def test_4xx_is_not_retried(self):
        """Including 413 for a single message: there is no half to send."""
        for code in (400, 413):
            h = Harness(self, script=[code])
            (r,) = h.submit(message(1))
            h.tick()
            self.assertEqual(r, ["refused"])
            self.assertEqual(len(h.webhook.bodies), 1)
            self.assertEqual(h.store.metrics.webhook_rejected["refused"], 1)
            h.assertAccounts()


class RequestFiguresTests(unittest.TestCase):
    """Per request: its outcome, its latency in the histogram, the pool in use against
    pool_size, and each retry by its cause (mqttd.ingest.request_stats)."""

    def test_a_hanging_request_is_in_flight_then_timed_in_the_histogram(self):
        h = Harness(self, script=[None], pool_size=3, request_timeout=100.0)
        metrics = h.store.metrics
        self.assertEqual(metrics.webhook_pool_size, 3)
        h.submit(message(1))
        h.tick()
        self.assertEqual(metrics.webhook_requests_in_flight, 1)
        h.tick(0.3)
        request = h.webhook.hanging.pop()
        request.write(json.dumps({"received": 1, "inserted": 1, "duplicates": 0}).encode())
        request.finish()
        h.tick()
        self.assertEqual(metrics.webhook_requests_in_flight, 0)
        self.assertEqual(metrics.webhook_requests, {"committed": 1})
        histogram = metrics.webhook_request_seconds
        self.assertEqual(histogram.count, 1)
        self.assertAlmostEqual(histogram.sum, 0.3)
        self.assertEqual(histogram.counts[histogram.bounds.index(0.5)], 1)  # 0.25 < 0.3 <= 0.5

    def test_retries_are_counted_by_cause(self):
        h = Harness(self, script=[503, 500, None], retry_initial=0.01, request_timeout=1.0,
                    ack_timeout=100.0)
        (r,) = h.submit(message(1))
        for _ in range(6):
            h.tick(1.0)
        self.assertEqual(r, ["ok"])
        metrics = h.store.metrics
        self.assertEqual(metrics.webhook_retried,
                         {"http 503": 1, "http 500": 1, "timeout": 1})
        self.assertEqual(metrics.webhook_requests, {"retryable": 3, "committed": 1})
        self.assertEqual(metrics.webhook_request_seconds.count, 4)
        self.assertEqual(metrics.webhook_requests_in_flight, 0)

    def test_a_refused_connection_and_a_refused_batch(self):
        class RefusingOnce:
            def __init__(self, real):
                self.real, self.refused = real, False

            def post(self, *args, **kwargs):
                if not self.refused:
                    self.refused = True
                    return fail(ConnectionRefusedError())
                return self.real.post(*args, **kwargs)

        h = Harness(self, http=RefusingOnce, script=[400], retry_initial=0.01)
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(0.01)
        self.assertEqual(r, ["refused"])
        metrics = h.store.metrics
        self.assertEqual(metrics.webhook_retried, {"connection": 1})
        self.assertEqual(metrics.webhook_requests, {"retryable": 1, "refused": 1})
        self.assertEqual(retry_cause(NoAddress("x")), "no address")
        self.assertEqual(retry_cause(ValueError()), "other")


class _Answer:
    """A response whose body arrives as the test says: ``chunks`` at once, the end when
    ``finish()`` is called (never, for a webhook that stalls after its headers)."""

    def __init__(self, code, chunks=(), headers=None):
        self.code = code
        self.headers = Headers(headers or {})
        self.transport = StringTransport()  # the connection: an abort is seen
        self._chunks = chunks
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        # As twisted.web's Response does: the body gets a proxy of the connection.
        protocol.makeConnection(TransportProxyProducer(self.transport))
        for chunk in self._chunks:
            protocol.dataReceived(chunk)

    def finish(self):
        self.protocol.connectionLost(Failure(ResponseDone()))


class _Answering:
    """An http client whose every POST gets the next of ``answers``."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def post(self, url, data, **kwargs):
        answer = self.answers.pop(0)
        self.sent.append(answer)
        return succeed(answer)


class AnswerTests(unittest.TestCase):
    """What the webhook answers, read to the end within the request's timeout."""

    def harness(self, answers, **config):
        self.answering = _Answering(answers)
        return Harness(self, request_timeout=1.0, retry_initial=0.1,
                       http=lambda _: self.answering, **config)

    def test_a_stalled_200_body_closes_its_connection_at_the_timeout(self):
        stalled = _Answer(200, [b'{"rec'])
        h = self.harness([stalled, _Answer(200, [b'{"received":1,"inserted":1,"duplicates":0}'])])
        (r,) = h.submit(message(1))
        h.tick()
        self.assertFalse(stalled.transport.disconnecting)
        h.tick(1.0)  # request_timeout: the read is cut short, and with it the connection
        self.assertTrue(stalled.transport.disconnected)  # aborted (TLS: no close_notify wait)
        self.assertEqual((r, sum(h.store.metrics.webhook_retried.values())), ([], 1))
        self.answering.answers[0].deliverBody = lambda p, a=self.answering.answers[0]: (
            _Answer.deliverBody(a, p), a.finish())
        h.tick(0.1)
        self.assertEqual(r, ["ok"])
        h.assertAccounts()

    def test_a_5xx_is_retried_once_its_body_is_read(self):
        answer = _Answer(503, [b'{"error":'], {b"Retry-After": [b"2"]})
        h = self.harness([answer], retry_max=5.0)
        (r,) = h.submit(message(1))
        h.tick()
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 0)  # still reading: the connection is not free
        answer.protocol.dataReceived(b'"busy"}')
        answer.finish()
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 1)
        self.assertFalse(answer.transport.disconnecting)  # read whole: back to the pool
        self.assertEqual([d.getTime() for d, _ in h.store._backoff.values()], [2.0])  # Retry-After
        h.assertAccounts()

    def test_a_stalled_5xx_body_closes_its_connection_at_the_timeout(self):
        stalled = _Answer(503, [b'{"err'])
        h = self.harness([stalled])
        (r,) = h.submit(message(1))
        h.tick()
        h.tick(1.0)
        self.assertTrue(stalled.transport.disconnected)
        self.assertEqual(sum(h.store.metrics.webhook_retried.values()), 1)
        self.assertEqual(r, [])
        h.assertAccounts()

    def test_a_refusal_reports_its_body(self):
        answer = _Answer(400, [b'{"error":"qos[0]: must be 0, 1 or 2"}'])
        h = self.harness([answer])
        (r,) = h.submit(message(1))
        h.tick()
        answer.finish()
        self.assertEqual(r, ["refused"])
        self.flushLoggedErrors()
        h.assertAccounts()

    def test_a_200_nested_too_deeply_is_a_bad_response(self):
        """json.loads raises RecursionError, not ValueError: it must not escape and leave
        the batch unsettled (no deadline watches a batch in flight)."""
        answer = _Answer(200, [b"[" * 100_000])
        h = self.harness([answer])
        (r,) = h.submit(message(1))
        h.tick()
        answer.finish()
        self.assertEqual((r, h.store.metrics.webhook_pending, h.store._busy), (["bad response"], 0, 0))
        h.assertAccounts()


class LimitTests(unittest.TestCase):
    def test_max_pending(self):
        h = Harness(self, max_pending=2, batch_delay=10.0)
        results = h.submit(message(1), message(2), message(3))
        self.assertEqual(results[2], ["overload"])
        h.tick(10.0)
        self.assertEqual(results[:2], [["ok"], ["ok"]])
        self.assertEqual(h.store.metrics.webhook_rejected["overload"], 1)
        h.assertAccounts()

    def test_stop_fails_what_was_not_sent(self):
        h = Harness(self, script=[None], batch_delay=10.0, batch_size=2)
        results = h.submit(*[message(n) for n in range(5)])
        h.tick()  # m0, m1 in flight (hanging); m2..m4, more than one batch, wait
        h.store.stop()
        self.assertEqual(results, [[], []] + [["stopping"]] * 3)
        self.assertEqual(h.submit(message(9))[0], ["stopping"])
        h.assertAccounts()

    def test_stop_fails_a_batch_answered_after_it(self):
        """A 413 (or a 5xx) for a batch in flight when the store stopped: its halves or
        its retry would never be sent, so it fails at once."""
        for code in (413, 500):
            h = Harness(self, script=[None], batch_size=4)
            results = h.submit(*[message(n) for n in range(4)])
            h.tick()  # in flight, hanging
            h.store.stop()
            request = h.webhook.hanging[0]
            request.setResponseCode(code)
            request.write(b'{"error": "scripted"}')
            request.finish()
            h.http.flush()
            self.assertEqual(results, [["stopping"]] * 4, code)
            self.assertEqual((h.store.metrics.webhook_pending, len(h.webhook.bodies)), (0, 1))
            h.assertAccounts()

    def test_stop_fails_a_retry_in_its_backoff(self):
        """Nothing else would settle it: its backoff ends after the store stopped."""
        h = Harness(self, script=[500], retry_initial=1.0, retry_max=1.0)
        (r,) = h.submit(message(1))
        h.tick()
        h.store.stop()
        self.assertEqual(r, ["stopping"])
        self.assertEqual((h.store.metrics.webhook_pending, h.clock.getDelayedCalls()), (0, []))
        h.assertAccounts()


class Recorder:
    """A submitter's ``notify``: records every call (tokens, failure)."""

    def __init__(self):
        self.calls = []

    def __call__(self, tokens, failure):
        self.calls.append((list(tokens), failure))


class SubmitTests(unittest.TestCase):
    """``submit``: the Deferred-free path the broker uses (ISubmittingMessageSink)."""

    def test_provides_the_submitting_interface(self):
        h = Harness(self)
        self.assertTrue(ISubmittingMessageSink.providedBy(h.store))

    def test_consecutive_messages_of_one_submitter_settle_in_one_call(self):
        h = Harness(self)
        a, b = Recorder(), Recorder()
        for n, notify in enumerate([a, a, a, b, b, a]):
            h.store.submit(message(n), notify, n)
        self.assertEqual((a.calls, b.calls), ([], []))  # nothing before the commit
        h.tick()
        self.assertEqual(len(h.webhook.bodies), 1)
        self.assertEqual(a.calls, [([0, 1, 2], None), ([5], None)])
        self.assertEqual(b.calls, [([3, 4], None)])
        self.assertEqual(h.store.metrics.webhook_committed, 6)
        h.assertAccounts()

    def test_failure_reaches_every_group_with_its_own_failure(self):
        h = Harness(self, script=[400])
        a, b = Recorder(), Recorder()
        h.store.submit(message(1), a, "a1")
        h.store.submit(message(2), b, "b1")
        h.store.submit(message(3), a, "a2")
        h.tick()
        self.assertEqual([t for t, _ in a.calls], [["a1"], ["a2"]])
        self.assertEqual([t for t, _ in b.calls], [["b1"]])
        failures = [f for r in (a, b) for _, f in r.calls]
        self.assertEqual(len({id(f) for f in failures}), 3)
        for f in failures:
            self.assertEqual(f.check(StoreRejected), StoreRejected)
            self.assertEqual(f.value.reason, "refused")
        self.assertEqual(h.store.metrics.webhook_rejected["refused"], 3)
        h.assertAccounts()

    def test_overload_is_refused_before_returning(self):
        h = Harness(self, max_pending=1, batch_delay=10.0)
        a = Recorder()
        h.store.submit(message(1), a, 1)
        h.store.submit(message(2), a, 2)
        self.assertEqual(len(a.calls), 1)
        tokens, failure = a.calls[0]
        self.assertEqual((tokens, failure.value.reason), ([2], "overload"))
        h.assertAccounts()

    def test_a_raising_notify_does_not_starve_the_others(self):
        h = Harness(self)
        good = Recorder()

        def broken(tokens, failure):
            raise ValueError("bug in a submitter")
        h.store.submit(message(1), broken, 1)
        h.store.submit(message(2), good, 2)
        h.tick()
        self.assertEqual(good.calls, [([2], None)])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        h.assertAccounts()

    def test_store_and_submit_mix(self):
        h = Harness(self)
        a = Recorder()
        h.store.submit(message(1), a, 1)
        (r,) = h.submit(message(2))
        h.store.submit(message(3), a, 3)
        h.tick()
        self.assertEqual(a.calls, [([1], None), ([3], None)])
        self.assertEqual(r, ["ok"])
        h.assertAccounts()

    def test_batch_size_cut_keeps_tokens_with_their_messages(self):
        h = Harness(self, batch_size=2, script=[200, 500], retry_initial=0.1)
        a = Recorder()
        for n in range(3):
            h.store.submit(message(n), a, n)
        h.tick()  # first batch [0, 1] committed, second [2] got a 500: retried
        self.assertEqual(a.calls, [([0, 1], None)])
        h.tick(0.1)
        self.assertEqual(a.calls, [([0, 1], None), ([2], None)])
        self.assertEqual(len(decode_batch(h.webhook.bodies[-1])), 1)
        h.assertAccounts()


class LingerTests(unittest.TestCase):
    """``linger``: right after an answer, with nothing in flight, the next batch waits for
    the submitters that answer acknowledged (windowed clients publish again at once)."""

    def answered(self, **config):
        """A store whose last answer acknowledged submitters a and b; (h, a, b, sent)."""
        h = Harness(self, **{"linger": 0.001, **config})
        a, b = Recorder(), Recorder()
        for n, notify in enumerate((a, b)):
            h.store.submit(message(100 + n), notify, n)
        h.tick()
        self.assertTrue(a.calls and b.calls)
        return h, a, b, len(h.webhook.bodies)

    @staticmethod
    def publish(h, notify, n):
        """``notify``'s message n, then a reactor turn; how many requests went out."""
        h.store.submit(message(n), notify, n)
        h.tick()
        return len(h.webhook.bodies)

    def test_a_forgotten_submitter_is_not_waited_for(self):
        """``forget``: its connection closed; the wait ends with the others, and a
        later answer with its messages still in it does not wait for it either."""
        h, a, b, sent = self.answered()
        h.store.forget(b)
        self.assertEqual(self.publish(h, a, 1), sent + 1)  # not held for b
        h.store.submit(message(2), b, 2)  # b's last messages, already in flight
        h.store.submit(message(3), a, 3)
        h.tick()
        self.assertEqual(h.store._linger.expected, {id(a)})  # that answer had b's messages too
        h.assertAccounts()

    def test_a_forgotten_submitter_leaves_no_id_behind(self):
        """Once its notify is freed a new submitter may get its address (CPython reuses
        them at once): that one must be waited for like any other, so nothing of the
        forgotten one may remain."""
        import gc

        h, a, b, sent = self.answered()
        h.store.forget(b)
        self.assertIn(id(b), h.store._linger._gone)
        key = id(b)
        del b
        gc.collect()
        # What stays is the client's own store() notify, forgotten at start (it stands
        # for no connection): nothing of the forgotten submitter.
        self.assertNotIn(key, h.store._linger._gone)
        self.assertEqual(len(h.store._linger._gone), 1)

    def test_waits_for_every_acknowledged_submitter_then_sends_one_batch(self):
        h, a, b, sent = self.answered()
        h.store.submit(message(1), a, 1)
        h.tick()
        self.assertEqual(len(h.webhook.bodies), sent)  # held for b
        h.store.submit(message(2), b, 2)
        h.store.submit(message(3), b, 3)  # the rest of b's read joins too
        h.tick()
        self.assertEqual(len(h.webhook.bodies), sent + 1)
        self.assertEqual([row[0] for row in decode_batch(h.webhook.bodies[-1])],
                         ["k-1", "k-2", "k-3"])
        h.assertAccounts()

    def test_a_wait_that_runs_out_sends_and_turns_linger_off(self):
        h, a, b, sent = self.answered()
        self.assertEqual(self.publish(h, a, 1), sent)  # held for b
        h.tick(0.001)  # b never came back
        self.assertEqual(len(h.webhook.bodies), sent + 1)
        self.assertEqual(a.calls[-1][0], [1])
        # Off now: after the next answer a's message leaves at once.
        self.assertEqual(self.publish(h, a, 2), sent + 2)
        h.assertAccounts()

    def test_linger_comes_back_when_the_acknowledged_return_in_time(self):
        h, a, b, _ = self.answered()
        h.store.submit(message(1), a, 1)
        h.tick(0.001)  # b does not come back: off; [1] sent and answered
        sent = len(h.webhook.bodies)
        # Off: b's message leaves at once although a (acknowledged) has not published.
        self.assertEqual(self.publish(h, b, 2), sent + 1)
        # b, acknowledged by that answer, publishes again within the linger: on again,
        self.assertEqual(self.publish(h, b, 3), sent + 2)
        # so after b's answer a's message waits for b, and they leave together.
        self.assertEqual(self.publish(h, a, 4), sent + 2)
        self.assertEqual(self.publish(h, b, 5), sent + 3)
        self.assertEqual([row[0] for row in decode_batch(h.webhook.bodies[-1])], ["k-4", "k-5"])

    def test_no_wait_when_disabled_full_or_busy(self):
        h, a, b, sent = self.answered(linger=0.0)
        self.assertEqual(self.publish(h, a, 1), sent + 1)
        # A full batch does not wait.
        h, a, b, sent = self.answered(batch_size=2)
        h.store.submit(message(1), a, 1)
        h.store.submit(message(2), a, 2)
        self.assertEqual(len(h.webhook.bodies), sent + 1)
        # Nor does one while another request is in flight (pool 2): then it is not the
        # webhook's idle time that the wait would fill.
        h = Harness(self, linger=0.001, pool_size=2, script=[None])
        a, b, c = Recorder(), Recorder(), Recorder()
        h.store.submit(message(1), a, 1)
        h.tick()  # a's request hangs
        h.store.submit(message(2), b, 2)
        h.tick()  # b's is answered: b is expected back, a's request still in flight
        self.assertEqual((len(h.webhook.hanging), len(b.calls)), (1, 1))
        self.assertEqual(self.publish(h, c, 3), 3)

    def test_store_deferreds_are_not_waited_for(self):
        """``store()`` callers share one notify that stands for no connection."""
        h = Harness(self, linger=0.001)
        h.submit(message(1))
        h.tick()
        h.submit(message(2))
        h.tick()
        self.assertEqual(len(h.webhook.bodies), 2)

    def test_stop_ends_a_wait(self):
        h, a, b, _ = self.answered()
        h.store.submit(message(1), a, 1)
        h.tick()
        h.store.stop()
        self.assertEqual(a.calls[-1][0], [1])
        self.assertTrue(a.calls[-1][1].check(StoreRejected))
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.assertAccounts()
