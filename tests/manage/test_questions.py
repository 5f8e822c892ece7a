"""The master's questions to its workers and a worker's answers, on a Clock: matched by
id, bounded in time, in number and in size, and every outcome counted."""
from twisted.internet.task import Clock
from twisted.trial import unittest

from mqttd.manage.questions import ANSWER_TIMEOUT, Answerer, Questions, Unanswered
from mqttd.metrics import Metrics


class Channel:
    def __init__(self, open_=True):
        self.sent = []
        self.open = open_

    def send(self, kind, payload):
        if not self.open:
            return False
        self.sent.append((kind, payload))
        return True


class QuestionsTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics()
        self.channels = {"mqttd-worker-1": Channel(), "mqttd-worker-2": Channel()}
        self.questions = Questions(self.clock, lambda: dict(self.channels), self.metrics)

    def asked(self, name):
        (kind, payload), = self.channels[name].sent
        self.assertEqual(kind, "ask")
        return payload

    def test_every_live_worker_is_asked_and_the_answers_come_back_by_process(self):
        d = self.questions.ask_all("clients", {"limit": 5})
        one, two = self.asked("mqttd-worker-1"), self.asked("mqttd-worker-2")
        self.assertEqual((one["question"], one["args"]), ("clients", {"limit": 5}))
        self.assertNotEqual(one["id"], two["id"])
        self.questions.answered("mqttd-worker-2", {"id": two["id"], "answer": {"n": 2}})
        self.assertNoResult(d)
        self.questions.answered("mqttd-worker-1", {"id": one["id"], "answer": {"n": 1}})
        self.assertEqual(self.successResultOf(d),
                         {"mqttd-worker-1": {"n": 1}, "mqttd-worker-2": {"n": 2}})
        self.assertEqual(self.metrics.manage_questions["answered"], 2)

    def test_a_worker_that_does_not_answer_in_time_is_unanswered(self):
        d = self.questions.ask_all("clients", {})
        one = self.asked("mqttd-worker-1")
        self.questions.answered("mqttd-worker-1", {"id": one["id"], "answer": {}})
        self.clock.advance(ANSWER_TIMEOUT - 0.01)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        answers = self.successResultOf(d)
        self.assertIsInstance(answers["mqttd-worker-2"], Unanswered)
        self.assertIn("timeout", answers["mqttd-worker-2"].reason)
        self.assertEqual(self.metrics.manage_questions["timeout"], 1)
        # Its late answer is dropped.
        two = self.asked("mqttd-worker-2")
        self.questions.answered("mqttd-worker-2", {"id": two["id"], "answer": {}})
        self.assertEqual(self.metrics.manage_questions["answered"], 1)

    def test_an_answer_from_another_process_or_without_an_id_is_dropped(self):
        d = self.questions.ask("mqttd-worker-1", self.channels["mqttd-worker-1"], "clients", {})
        ask_id = self.asked("mqttd-worker-1")["id"]
        self.questions.answered("mqttd-worker-2", {"id": ask_id, "answer": "forged"})
        self.questions.answered("mqttd-worker-1", {"answer": "no id"})
        self.questions.answered("mqttd-worker-1", ["not", "a", "dict"])
        self.assertNoResult(d)
        self.questions.answered("mqttd-worker-1", {"id": ask_id, "answer": "mine"})
        self.assertEqual(self.successResultOf(d), "mine")

    def test_a_worker_that_goes_ends_its_questions_at_once(self):
        d = self.questions.ask_all("clients", {})
        self.questions.gone("mqttd-worker-1")
        one = self.asked("mqttd-worker-1")
        two = self.asked("mqttd-worker-2")
        self.questions.answered("mqttd-worker-2", {"id": two["id"], "answer": {}})
        answers = self.successResultOf(d)
        self.assertIn("lost", answers["mqttd-worker-1"].reason)
        self.questions.answered("mqttd-worker-1", {"id": one["id"], "answer": {}})
        self.assertEqual(dict(self.metrics.manage_questions), {"lost": 1, "answered": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_closed_channel_and_the_cap_answer_at_once(self):
        self.channels["mqttd-worker-1"].open = False
        d = self.questions.ask("mqttd-worker-1", self.channels["mqttd-worker-1"], "clients", {})
        self.assertIn("lost", self.successResultOf(d).reason)
        questions = Questions(self.clock, dict, self.metrics, max_pending=1)
        questions.ask("w", Channel(), "clients", {})
        refused = self.successResultOf(questions.ask("w", Channel(), "clients", {}))
        self.assertIn("refused", refused.reason)
        self.assertEqual(self.metrics.manage_questions["refused"], 1)

    def test_an_error_answer_is_unanswered_with_its_reason(self):
        d = self.questions.ask("mqttd-worker-1", self.channels["mqttd-worker-1"], "x", {})
        ask_id = self.asked("mqttd-worker-1")["id"]
        self.questions.answered("mqttd-worker-1", {"id": ask_id, "error": "unknown question"})
        self.assertEqual(self.successResultOf(d).reason, "error: unknown question")

    def test_no_worker_no_question(self):
        questions = Questions(self.clock, dict, self.metrics)
        self.assertEqual(self.successResultOf(questions.ask_all("clients", {})), {})


class AnswererTests(unittest.TestCase):
    def setUp(self):
        self.sent = []
        self.answerer = Answerer(lambda kind, payload: self.sent.append((kind, payload)),
                                 {"echo": lambda args: {"got": args}}, max_bytes=100)

    def test_a_known_question_is_answered_with_its_id(self):
        self.answerer.asked({"id": 7, "question": "echo", "args": {"a": 1}})
        self.assertEqual(self.sent, [("answer", {"id": 7, "answer": {"got": {"a": 1}}})])

    def test_unknown_failing_and_too_big_answers_are_errors(self):
        def broken(args):
            raise ValueError("bad limit")
        self.answerer.handle("broken", broken)
        self.answerer.handle("big", lambda args: "x" * 200)
        self.answerer.asked({"id": 1, "question": "nope"})
        self.answerer.asked({"id": 2, "question": "broken"})
        self.answerer.asked({"id": 3, "question": "big"})
        self.answerer.asked({"id": 4, "question": "echo", "args": "not a dict"})
        errors = {payload["id"]: payload["error"] for _, payload in self.sent}
        self.assertEqual(sorted(errors), [1, 2, 3, 4])
        self.assertIn("unknown question 'nope'", errors[1])
        self.assertEqual(errors[2], "ValueError: bad limit")
        self.assertIn("over 100", errors[3])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_a_question_without_an_id_is_ignored(self):
        self.answerer.asked({"question": "echo"})
        self.assertEqual(self.sent, [])
