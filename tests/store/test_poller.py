"""GuardedPoll: a poll at start and every interval after the last one ended, never two
in flight, poll_now, a stop that waits for the poll in flight, and failure runs."""
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.store.poller import GuardedPoll


class PollerCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.answers = []  # what the next polls return (a Deferred, a failure), else None
        self.polls = 0
        self.failures = []  # (error message, run)
        self.recoveries = []
        self.poller = GuardedPoll(self.clock, 0.5, self.poll, self.failed,
                                  self.recoveries.append)
        self.addCleanup(self.poller.stop)

    def poll(self):
        self.polls += 1
        return self.answers.pop(0) if self.answers else None

    def failed(self, failure, run):
        self.failures.append((failure.getErrorMessage(), run))


class ScheduleTests(PollerCase):
    def test_start_polls_at_once_then_every_interval(self):
        self.assertIsNone(self.successResultOf(self.poller.start()))
        self.assertEqual(self.polls, 1)
        self.clock.advance(0.4)
        self.assertEqual(self.polls, 1)
        self.clock.advance(0.1)
        self.clock.advance(0.5)
        self.assertEqual(self.polls, 3)

    def test_a_coroutine_poll_is_awaited(self):
        ran = []

        async def poll():
            ran.append(self.clock.seconds())

        poller = GuardedPoll(self.clock, 1.0, poll, self.failed, self.recoveries.append)
        self.addCleanup(poller.stop)
        poller.start()
        self.clock.advance(1.0)
        self.assertEqual(ran, [0.0, 1.0])

    def test_a_slow_poll_delays_the_next_and_never_stacks(self):
        slow = Deferred()
        self.answers.append(slow)
        started = self.poller.start()
        self.assertNoResult(started)
        self.clock.advance(5.0)
        self.poller.poll_now()  # in flight: not a second one
        self.assertEqual(self.polls, 1)
        self.clock.advance(1.0)
        slow.callback(None)
        self.successResultOf(started)
        self.clock.advance(0.4)
        self.assertEqual(self.polls, 1)  # the interval counts from the end
        self.clock.advance(0.1)
        self.assertEqual(self.polls, 2)

    def test_start_again_does_not_poll_twice(self):
        self.poller.start()
        self.poller.start()
        self.assertEqual(self.polls, 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_poll_now_polls_at_once_and_restarts_the_interval(self):
        self.poller.start()
        self.clock.advance(0.3)
        self.poller.poll_now()
        self.assertEqual(self.polls, 2)
        self.clock.advance(0.3)
        self.assertEqual(self.polls, 2)
        self.clock.advance(0.2)
        self.assertEqual(self.polls, 3)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_poll_now_before_start_does_nothing(self):
        self.poller.poll_now()
        self.assertEqual(self.polls, 0)
        self.assertFalse(self.poller.running)


class StopTests(PollerCase):
    def test_stop_cancels_the_next_tick(self):
        self.poller.start()
        self.assertIsNone(self.successResultOf(self.poller.stop()))
        self.assertFalse(self.poller.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5.0)
        self.assertEqual(self.polls, 1)

    def test_stop_waits_for_the_poll_in_flight_and_schedules_none_after_it(self):
        slow = Deferred()
        self.answers.append(slow)
        self.poller.start()
        stopped = self.poller.stop()
        self.assertNoResult(stopped)
        slow.callback(None)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_after_stop_polls_again(self):
        self.poller.start()
        self.poller.stop()
        self.poller.start()
        self.assertEqual(self.polls, 2)


class FailureTests(PollerCase):
    def test_failures_are_handed_on_with_their_run_then_the_recovery(self):
        self.answers += [fail(OSError("locked")), fail(OSError("still locked"))]
        self.successResultOf(self.poller.start())  # a failed poll ends it too
        self.clock.advance(0.5)
        self.assertEqual(self.failures, [("locked", 1), ("still locked", 2)])
        self.assertEqual(self.recoveries, [])
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.recoveries, [2])  # once, at the first success
        self.answers.append(fail(OSError("again")))
        self.clock.advance(0.5)
        self.assertEqual(self.failures[-1], ("again", 1))

    def test_a_poll_that_raises_is_a_failure_and_polling_goes_on(self):
        def poll():
            self.polls += 1
            raise ValueError("bad")

        poller = GuardedPoll(self.clock, 0.5, poll, self.failed, self.recoveries.append)
        self.addCleanup(poller.stop)
        poller.start()
        self.clock.advance(0.5)
        self.assertEqual(self.failures, [("bad", 1), ("bad", 2)])
