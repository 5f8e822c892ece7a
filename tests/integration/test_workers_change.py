"""A persistent session survives a change of ``server.workers`` across a restart.

The default is the host's cores, so the number changes without anyone editing it: the
upgrade from the one process (whose sessions are in sessions-0.db) to the tree, or a
host given more cores. Each client id reaches the worker its hash picks among the
configured ones, and must find its session there, with what it was owed meanwhile.
"""
from tests.integration.support.process import ANONYMOUS, requires_mqttd
from tests.integration.support.testcase import BrokerTestCase

ONE_PROCESS = ANONYMOUS + "[server]\nworkers = 0\n"
TWO_WORKERS = ANONYMOUS + "[server]\nworkers = 2\n"


@requires_mqttd("sessions kept in SQLite, per broker process")
class WorkersChangeTests(BrokerTestCase):
    config = ONE_PROCESS

    def restart_with(self, config):
        self.broker.stop()
        self.broker.config = config
        self.broker.start()
        self.port = self.broker.port

    def offline_sessions_owed_one_message_each(self, count):
        ids = [self.new_id("keep") for _ in range(count)]
        for client_id in ids:
            sub = self.client(client_id, clean_session=False)
            sub.subscribe(f"change/{client_id}", 1)
            sub.disconnect()
        pub = self.client()
        for client_id in ids:
            pub.publish(f"change/{client_id}", f"owed {client_id}".encode(), 1)
        pub.disconnect()
        return ids

    def assertSessionsBack(self, ids):
        for client_id in ids:
            back = self.client(client_id, connect=False, clean_session=False)
            self.assertTrue(back.connect()[1], f"{client_id}: session lost\n{self.context()}")
            self.assertEqual(back.get_message().payload, f"owed {client_id}".encode())
            back.disconnect()

    def test_from_one_process_to_the_default_tree_and_back(self):
        # Eight ids: with two workers or more, some of them hash to each worker.
        ids = self.offline_sessions_owed_one_message_each(8)
        self.restart_with(ANONYMOUS)  # the default: one worker per usable core
        self.assertIn("mqttd tree", self.broker.output())
        self.assertSessionsBack(ids)
        ids = self.offline_sessions_owed_one_message_each(8)
        self.restart_with(ONE_PROCESS)
        self.assertSessionsBack(ids)

    def test_from_two_workers_to_three(self):
        self.restart_with(TWO_WORKERS)
        ids = self.offline_sessions_owed_one_message_each(8)
        self.restart_with(ANONYMOUS + "[server]\nworkers = 3\n")
        self.assertSessionsBack(ids)
