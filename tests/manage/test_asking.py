"""A question from the master to every worker over their channels, and the answers."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.asking import MAX_ANSWER, Answerer, Asker, TooManyQuestions
from mqttd.metrics import Metrics


class FakeChannel:
    def __init__(self, writable=True):
        self.sent = []
        self.writable = writable

    def send(self, kind, payload):
        if self.writable:
            self.sent.append((kind, payload))
        return self.writable


class AskingTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.channels = {1: FakeChannel(), 2: FakeChannel()}
        self.asker = Asker(self.clock, lambda: self.channels, self.metrics, max_pending=2)
        # Each worker's Answerer sends its answer back through the asker, as the master
        # hands the "answer" messages it reads to it.
        self.answerers = {
            slot: Answerer(lambda kind, payload, slot=slot: self.asker.answered(slot, payload),
                           {"echo": lambda payload, slot=slot: {"slot": slot,
                                                                "x": payload["x"]}})
            for slot in self.channels}

    def deliver(self, slot):
        kind, payload = self.channels[slot].sent.pop(0)
        self.assertEqual(kind, "ask")
        self.answerers[slot].asked(payload)

    def test_every_worker_answers(self):
        d = self.asker.ask("echo", x=7)
        got = []
        d.addCallback(got.append)
        self.deliver(1)
        self.assertEqual(got, [])
        self.deliver(2)
        self.assertEqual(got, [{1: {"slot": 1, "x": 7}, 2: {"slot": 2, "x": 7}}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_silent_worker_costs_the_timeout_not_the_answer(self):
        got = []
        self.asker.ask("echo", x=1).addCallback(got.append)
        self.deliver(2)
        self.clock.advance(1.0)
        self.assertEqual(got, [{2: {"slot": 2, "x": 1}}])
        self.assertEqual(self.metrics.manage_questions_unanswered, 1)
        self.deliver(1)  # late: ignored
        self.assertEqual(len(got), 1)

    def test_no_live_worker_answers_at_once_with_nothing(self):
        self.channels = {1: FakeChannel(writable=False)}
        got = []
        self.asker.ask("echo", x=1).addCallback(got.append)
        self.assertEqual(got, [{}])

    def test_questions_waiting_are_bounded(self):
        self.asker.ask("echo", x=1)
        self.asker.ask("echo", x=2)
        failed = []
        self.asker.ask("echo", x=3).addErrback(lambda f: failed.append(f.check(TooManyQuestions)))
        self.assertEqual(failed, [TooManyQuestions])
        self.clock.advance(1.0)

    def test_unknown_questions_failing_handlers_and_big_answers_are_errors(self):
        replies = []
        answerer = Answerer(lambda kind, payload: replies.append(payload), {
            "boom": lambda payload: 1 / 0,
            "big": lambda payload: {"x": "y" * (MAX_ANSWER + 1)}})
        answerer.asked({"id": 1, "question": "nope"})
        answerer.asked({"id": 2, "question": "boom"})
        answerer.asked({"id": 3, "question": "big"})
        answerer.asked({"question": "no id"})
        self.assertEqual([r["id"] for r in replies], [1, 2, 3])
        self.assertIn("unknown question", replies[0]["error"])
        self.assertIn("ZeroDivisionError", replies[1]["error"])
        self.assertIn("over", replies[2]["error"])
        self.assertTrue(all("answer" not in r for r in replies))
        self.flushLoggedErrors(ZeroDivisionError)
