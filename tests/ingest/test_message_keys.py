"""Message keys: sortable within a run (index locality), and unguessable.

The boot id is in every row and in the log; with ``BOOTID-COUNTER`` keys an attacker
forged rows under the next keys, and the real messages that got those keys were taken
for "already stored": acknowledged, never stored (issue 11, point 1).
"""
from twisted.internet import task
from twisted.trial import unittest

from mqttd.broker.auth import StaticAuthenticator
from mqttd.broker.broker import Broker
from mqttd.config import AuthConfig, BrokerConfig
from mqttd.store.memory import InMemorySink


def broker():
    return Broker(task.Clock(), BrokerConfig(), InMemorySink(),
                  StaticAuthenticator(AuthConfig(allow_anonymous=True)))


def keys(b, n):
    return [b.make_message("c", None, "t", b"", 1, False, 0.0).key for _ in range(n)]


class MessageKeyTests(unittest.TestCase):
    def test_a_key_does_not_give_the_next(self):
        """Each key ends in 64 random bits: the next key is not its predecessor's
        counter + 1, and the random parts look like independent coin flips."""
        b = broker()
        run = keys(b, 1000)  # several blocks of keys
        parts = [key.split("-") for key in run]
        self.assertEqual({len(p) for p in parts}, {3})  # BOOTID-COUNTER-RANDOM
        self.assertEqual({p[0] for p in parts}, {b.boot_id})
        randoms = [p[2] for p in parts]
        self.assertEqual({len(r) for r in randoms}, {16})
        self.assertEqual(len(set(randoms)), len(randoms))
        ones = sum(bin(int(r, 16)).count("1") for r in randoms)
        bits = 64 * len(randoms)
        # Binomial(64000, 1/2): the standard deviation is ~126; 6 of them is ~760.
        self.assertLess(abs(ones - bits / 2), 760)
        for before, after in zip(parts, parts[1:]):
            # Knowing one key's counter tells the next one's, not its random part.
            self.assertEqual(int(after[1], 16), int(before[1], 16) + 1)
        guessed = {f"{p[0]}-{int(p[1], 16) + 1:012x}" for p in parts}
        self.assertFalse(guessed & set(run))
        self.assertEqual(run, sorted(run))  # still arrival order, across blocks
