"""A payload of exactly 1 MiB at QoS 1, with the default config, from real clients.

paho and mosquitto_pub publish it to the real ``twistd mqttd``; it must be
acknowledged and stored whole (the default ``broker.max_packet_size`` counts the
header and the topic too, and used to refuse it).
"""
import os
import subprocess

from tests.integration.support.common import HOST, wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.mosquitto_clients import MOSQUITTO_PUB
from tests.integration.support.process import requires_mqttd
from tests.integration.support.testcase import BrokerTestCase

MIB = 1024 * 1024


@requires_mqttd("the row in mqttd.db")
class OneMebibytePayloadTests(BrokerTestCase):
    def stored_payload(self, client_id):
        rows = []

        def stored():
            rows[:] = [row for row in stored_messages(self.broker.db_path)
                       if row[0] == client_id]
            return rows

        wait_for(stored, message=f"the row of {client_id}", context=self.context)
        return rows[0][1]

    def test_mosquitto_pub(self):
        payload = os.urandom(MIB)
        path = os.path.join(self.broker.workdir, "payload.bin")
        with open(path, "wb") as f:
            f.write(payload)
        client_id = self.new_id("mosquitto-pub")
        result = subprocess.run(
            [MOSQUITTO_PUB, "-h", HOST, "-p", str(self.broker.port), "-V", "mqttv311",
             "-i", client_id, "-t", "sensors/big/blob", "-q", "1", "-f", path, "-d"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr + self.context())
        self.assertIn("received PUBACK", result.stdout)
        self.assertEqual(self.stored_payload(client_id), payload)

    def test_paho(self):
        payload = os.urandom(MIB)
        client = self.client(self.new_id("paho"))
        client.publish("sensors/big/blob", payload, qos=1, timeout=30)  # waits for PUBACK
        self.assertEqual(self.stored_payload(client.client_id), payload)
