"""The trace across the tree: the master's events (accept, refusal, auth, closed before
CONNECT, its own refusals after the gate: CONNACK 3 when no worker took it in time or
it stops, a failed hand-off), the rules to every worker, and ``recent_events`` from the master and the
workers at once. Real SQLite and files in a temp dir; Clock and inline pool."""
import json
import os

import attrs
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mqttd.broker.admission import AuthResult
from mqttd.broker.lograte import LogRateLimit
from mqttd.codec import Connect
from mqttd.config import Config
from mqttd.edge.balancer import Balancer
from mqttd.edge.door import Refusal
from mqttd.edge.handoff_master import HandoffQueueFull
from mqttd.ingest.service import prepare_database
from mqttd.manage.questions import ANSWER_TIMEOUT, Answerer, Questions
from mqttd.manage.trace_service import NoTrace, TraceOff, single_trace
from mqttd.manage.trace_tree import MasterTrace, master_trace, worker_trace
from mqttd.metrics import Metrics
from mqttd.store.sqlite import DB_FILENAME
from mqttd.tree.connect_outcomes import NO_WORKER, STOPPING, ConnectOutcomes
from mqttd.tree.waiting_room import Let, WaitingRoom
from tests.support.store import InlinePool, InlineReactor


class Channel:
    def __init__(self):
        self.sent = []

    def send(self, kind, payload):
        self.sent.append((kind, payload))
        return True


class Pending:
    def __init__(self, peer):
        self.peer = peer
        self.host = peer[0]


def config_in(directory, **manage):
    config = Config()
    return attrs.evolve(config, server=attrs.evolve(config.server, data_dir=directory),
                        manage=attrs.evolve(config.manage, trace_file=os.path.join(
                            directory, "trace.jsonl"), **manage))


class MasterTraceTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        prepare_database(os.path.join(self.dir, DB_FILENAME))
        self.config = config_in(self.dir)
        self.reactor = InlineReactor()
        self.channels = {1: Channel(), 2: Channel()}
        self.metrics = Metrics()
        self.questions = Questions(self.reactor, lambda: {
            f"mqttd-worker-{slot}": channel for slot, channel in self.channels.items()},
            self.metrics)
        self.master = MasterTrace(self.reactor, self.config, self.metrics, "mqttd-master",
                                  lambda: self.channels, self.questions,
                                  threadpool=InlinePool())
        self.master.startService()
        self.addCleanup(self.master.stopService)

    def lines(self):
        self.reactor.advance(0)  # the end of the turn: the file is written
        with open(self.config.manage.trace_file, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def test_accept_auth_and_refusals_with_their_limits(self):
        self.master.at_accept(("10.0.0.1", 5000), None)
        self.master.at_accept(("10.0.0.2", 6000),
                              Refusal("limits.max_conn_per_ip", "1000 connections open"))
        self.master.judged(Pending(("10.0.0.1", 5000)), Connect("dev", username="tok123456"),
                           "dev", AuthResult(0, account="acme"))
        self.master.at_accept(("10.0.0.3", 7000), None)
        self.master.judged(Pending(("10.0.0.3", 7000)), Connect("bad", username="xyz987654"),
                           "bad", AuthResult(5, reason="bad token", limit="accounts and tokens"))
        self.master.not_connected(Pending(("10.0.0.4", 8000)), "no CONNECT in time")
        events = self.lines()
        self.assertEqual([(e["event"], e["peer"]) for e in events], [
            ("accept", "10.0.0.1:5000"), ("refused", "10.0.0.2:6000"), ("auth", "10.0.0.1:5000"),
            ("accept", "10.0.0.3:7000"), ("auth", "10.0.0.3:7000"),
            ("disconnect", "10.0.0.4:8000")])
        self.assertEqual(events[1]["limit"], "limits.max_conn_per_ip")
        auth = events[2]
        self.assertEqual((auth["client_id"], auth["account"], auth["token"], auth["username"],
                          auth["result"], auth["method"]),
                         ("dev", "acme", "tok123", None, "accepted", "token"))
        self.assertEqual((events[4]["result"], events[4]["limit"]),
                         ("refused", "accounts and tokens"))
        self.assertEqual(events[5]["limit"], "broker.idle_timeout")
        self.assertNotIn("tok123456", json.dumps(events))
        # The accept went into the client's window with its auth result.
        self.assertEqual([e["event"] for e in self.master.tracer.recent("dev")],
                         ["accept", "auth"])

    def test_the_masters_own_refusals_after_the_gate_name_their_reason(self):
        """CONNACK 3 because no worker took it within broker.idle_timeout (the waiting
        room), CONNACK 3 at the master's stop, a failed hand-off: each a ``refused``
        event, the first in the client's window after its accept and auth."""
        outcomes = ConnectOutcomes(self.metrics, LogRateLimit(self.reactor, 10, 60.0),
                                   self.master)
        room = WaitingRoom(self.reactor, Balancer((1, 2)), 2, 5.0,
                           lambda *sent: self.fail(f"no worker is up: {sent}"),
                           lambda pending, connect, let, why: outcomes.refused(
                               pending, connect, let.client_id, let.account, why, 3))
        room.start()
        first, connect = Pending(("10.0.0.1", 5000)), Connect("dev", username="tok123456")
        self.master.at_accept(first.peer, None)
        self.master.judged(first, connect, "dev", AuthResult(0, account="acme"))
        room.enter(first, connect, Let("dev", "acme", None, False))
        self.reactor.advance(4.9)
        self.assertEqual([e["event"] for e in self.lines()], ["accept", "auth"])
        self.reactor.advance(0.1)
        room.enter(Pending(("10.0.0.2", 6000)), Connect("dev-2"),
                   Let("dev-2", None, None, False))
        room.stop()
        outcomes.handoff_failed(Pending(("10.0.0.3", 7000)), Connect("dev-3"), "dev-3", None,
                                2, Failure(HandoffQueueFull("queue full")))
        refused = [e for e in self.lines() if e["event"] == "refused"]
        self.assertEqual([(e["client_id"], e["peer"], e["stage"], e["code"], e["reason"],
                           e["limit"]) for e in refused], [
            ("dev", "10.0.0.1:5000", "connect", 3, NO_WORKER,
             "broker.idle_timeout (no worker up to take it)"),
            ("dev-2", "10.0.0.2:6000", "connect", 3, STOPPING, None),
            ("dev-3", "10.0.0.3:7000", "handoff", None, "hand-off failed", None)])
        self.assertEqual((refused[0]["account"], refused[0]["token"], refused[0]["username"]),
                         ("acme", "tok123", None))
        self.assertEqual((refused[2]["detail"], refused[2]["worker"]), ("queue_full", 2))
        self.assertEqual([e["event"] for e in self.master.tracer.recent("dev")],
                         ["accept", "auth", "refused"])
        self.assertEqual(self.metrics.value("trace_events", event="refused"), 3)

    def test_rules_go_to_every_worker_and_to_one_that_starts(self):
        for channel in self.channels.values():  # the first poll: none yet
            self.assertEqual(channel.sent, [("trace_rules", {"rules": []})])
            channel.sent.clear()
        added = []
        self.master.trace_add(client_id="dev").addCallback(added.append)
        self.assertEqual((added[0]["kind"], added[0]["value"]), ("client_id", "dev"))
        for channel in self.channels.values():
            self.assertEqual(channel.sent, [("trace_rules", {"rules": [["client_id", "dev"]]})])
        self.assertEqual([r["value"] for r in self.master.trace_list()], ["dev"])
        self.channels[3] = Channel()
        self.master.worker_ready(3)
        self.assertEqual(self.channels[3].sent,
                         [("trace_rules", {"rules": [["client_id", "dev"]]})])
        removed = []
        self.master.trace_rm(client_id="dev").addCallback(removed.append)
        self.assertEqual(removed, [True])
        self.assertEqual(self.channels[1].sent[-1], ("trace_rules", {"rules": []}))
        failed = []
        self.master.trace_add(client_id="a", ip="1.2.3.4").addErrback(failed.append)
        self.assertIn("name one of", str(failed[0].value))

    def workers(self):
        """A WorkerTrace per slot, each behind its own Answerer as in mqttd.tree.worker."""
        workers, answerers = {}, {}
        for slot in (1, 2):
            name = f"mqttd-worker-{slot}"
            workers[slot] = worker_trace(self.reactor, self.config, Metrics(), name)
            answerers[slot] = Answerer(
                lambda kind, payload, name=name: self.questions.answered(name, payload))
            answerers[slot].handle("trace", workers[slot].recent)
            self.addCleanup(workers[slot].close)
        return workers, answerers

    def ask_after_connect(self, worker):
        """"dev" connects on ``worker``; the master asks for its events: the list that
        gets them once every worker answered (or the question timed out)."""
        trace, _ = worker.tracer.opened(StringTransport())
        trace.identify("dev", None, None)
        trace.connected(True, 60, False)
        for channel in self.channels.values():
            channel.sent.clear()
        got = []
        self.master.recent_events("dev").addCallback(got.append)
        return got

    def test_recent_events_from_the_master_and_every_worker_by_time(self):
        workers, answerers = self.workers()
        self.master.at_accept(("10.0.0.1", 5000), None)
        self.master.judged(Pending(("10.0.0.1", 5000)), Connect("dev"), "dev", AuthResult(0))
        self.reactor.advance(1)
        got = self.ask_after_connect(workers[2])
        for slot, channel in self.channels.items():
            kind, payload = channel.sent.pop()
            self.assertEqual((kind, payload["question"]), ("ask", "trace"))
            answerers[slot].asked(payload)
        self.assertEqual([(e["event"], e["process"]) for e in got[0]], [
            ("accept", "mqttd-master"), ("auth", "mqttd-master"), ("connect", "mqttd-worker-2")])
        self.assertEqual(self.metrics.manage_questions["answered"], 2)
        workers[1].rules({"rules": [["client_id", "dev"]]})
        self.assertTrue(workers[1].tracer.matcher.matches("dev", None, None))

    def test_a_worker_that_does_not_answer_leaves_the_others_events(self):
        workers, answerers = self.workers()
        got = self.ask_after_connect(workers[1])
        answerers[1].asked(self.channels[1].sent.pop()[1])  # worker 2 stays silent
        self.assertEqual(got, [])
        self.reactor.advance(ANSWER_TIMEOUT)
        self.assertEqual([(e["event"], e["process"]) for e in got[0]],
                         [("connect", "mqttd-worker-1")])
        self.assertEqual(self.metrics.manage_questions["timeout"], 1)
        with self.assertRaises(ValueError):  # a question without a client id
            workers[1].recent({})


class TraceOffTests(unittest.TestCase):
    def test_no_trace_file_no_trace_and_the_api_says_so(self):
        config = Config()
        self.assertIsInstance(master_trace(None, config, Metrics(), "m", dict, None), NoTrace)
        self.assertIsInstance(single_trace(None, config, Metrics()), NoTrace)
        self.assertIsNone(worker_trace(None, config, Metrics(), "w"))
        off = NoTrace()
        self.assertIsNone(off.at_accept)
        failed = []
        off.recent_events("dev").addErrback(lambda f: failed.append(f.check(TraceOff)))
        self.assertEqual(failed, [TraceOff])

    def test_the_masters_refusals_take_the_same_hooks_with_the_trace_off(self):
        metrics = Metrics()
        outcomes = ConnectOutcomes(metrics, LogRateLimit(InlineReactor(), 1, 60.0), NoTrace())
        pending = Pending(("10.0.0.1", 5000))
        outcomes.closed(pending, "no CONNECT in time")
        outcomes.refused(pending, Connect("dev"), "dev", None, NO_WORKER, 3)
        outcomes.handoff_failed(pending, Connect("dev"), "dev", None, 1,
                                Failure(HandoffQueueFull("queue full")))
        self.assertEqual((metrics.value("edge_connect_closed", reason="idle_timeout"),
                          metrics.value("mqtt_connect_refused", reason="no worker"),
                          metrics.value("edge_handoff_failed", reason="queue_full")), (1, 1, 1))
