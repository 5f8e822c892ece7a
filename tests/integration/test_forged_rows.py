"""The attack of issue 11, point 1, against the real appliance.

Tried as an attacker would: a local user learns one message key (the boot id is in every
row and in the log), POSTs rows under the keys that come next, then a device publishes
for real. Before the fix the webhook took the forged rows (no authentication), counted
the real message as "already stored" under its guessed key, and mqttd acknowledged a
message that is stored nowhere. Now the POST needs the tier's secret, and even with it
the next key cannot be guessed: every acknowledged message is in the database.
"""
import base64
import json
import re
import urllib.error
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.support.common import wait_for
from tests.integration.support.database import stored_messages
from tests.integration.support.mosquitto_clients import mosquitto_pub
from tests.integration.support.process import ANONYMOUS, requires_mqttd, start_broker

GUESSES = 500
_INGEST_URL = re.compile(r"ingest webhook listening on (http://\S+/v1/messages)")


def forged_body(keys, client_id):
    n = len(keys)
    payload = b"FORGED"
    return json.dumps({
        "key": keys, "client_id": [client_id] * n, "username": [None] * n,
        "topic": ["sensors/dev-1/temp"] * n, "qos": [1] * n, "retain": [False] * n,
        "received_at": [1767225600.25] * n, "payload_len": [len(payload)] * n,
        "payload": base64.b64encode(payload * n).decode("ascii"),
    }).encode()


def post(url, body, secret=None):
    """POST ``body`` as a local user would (curl, urllib); the HTTP status."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    if secret is not None:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def next_keys(key, count):
    """The keys an attacker guesses from one known key: its counter's successors, with and
    without the known key's random part."""
    boot, counter, *rest = key.split("-")
    guesses = []
    for n in range(int(counter, 16) + 1, int(counter, 16) + 1 + count):
        guesses.append(f"{boot}-{n:012x}")
        guesses.extend(f"{boot}-{n:012x}-{r}" for r in rest)
    return guesses


@requires_mqttd("the durable ingest tier")
class ForgedRowTests(SynchronousTestCase):
    def attack(self, config, secret):
        broker = start_broker(self, config)
        url = wait_for(lambda: _INGEST_URL.search(broker.output()), message="the ingest URL",
                       context=broker.tail).group(1)
        mosquitto_pub(broker.port, "sensors/dev-1/temp", "FIRST-21.4", qos=1, client_id="dev-1")
        (known,) = [key for _, payload, key, _, _ in stored_messages(broker.db_path)]
        status = post(url, forged_body(next_keys(known, GUESSES), "dev-1"), secret)
        for n in range(5):
            mosquitto_pub(broker.port, "sensors/dev-1/temp", f"REAL-21.{5 + n}", qos=1,
                          client_id="dev-1")  # returns once the PUBACK came
        real = sorted(bytes(payload).decode() for client_id, payload, *_ in
                      stored_messages(broker.db_path) if not bytes(payload) == b"FORGED")
        self.assertEqual(real, ["FIRST-21.4"] + [f"REAL-21.{5 + n}" for n in range(5)],
                         broker.tail())
        return status, broker

    def test_a_local_user_without_the_secret_is_refused(self):
        status, broker = self.attack(ANONYMOUS, None)
        self.assertEqual(status, 401)
        self.assertNotIn(b"FORGED", [bytes(p) for _, p, *_ in stored_messages(broker.db_path)])

    def test_with_the_secret_the_next_keys_still_cannot_be_guessed(self):
        secret = "an-attacker-knows-this-secret"
        status, broker = self.attack(ANONYMOUS + f'[ingest]\nsecret = "{secret}"\n', secret)
        self.assertEqual(status, 200)  # stored under keys no message of mqttd will get
        forged = [p for _, p, *_ in stored_messages(broker.db_path) if bytes(p) == b"FORGED"]
        self.assertEqual(len(forged), 2 * GUESSES)
