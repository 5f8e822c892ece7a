"""The master hands a child its configuration as a document: it must come back the same."""
from twisted.trial import unittest

from mqttd.config import config_document, parse_config


class DocumentTests(unittest.TestCase):
    def roundtrip(self, document):
        config = parse_config(document)
        again = parse_config(config_document(config))
        self.assertEqual(again, config)
        return again

    def test_defaults(self):
        self.roundtrip({})

    def test_everything_that_is_not_a_scalar(self):
        config = self.roundtrip({
            "server": {"listen": ["tcp:0:interface=127.0.0.1", "unix:/tmp/x.sock"],
                       "workers": 3},
            "auth": {"users": [{"username": "u", "password": "p w"}]},
            "webhook": {"url": "http://127.0.0.1:9/ingest", "secret": "s3s3s3s3s3s3s3s3s3",
                        "headers": {"X-Tenant": "a"}},
            "ingest": {"secret": "tier-tier-tier-tier", "batch_size": 7},
        })
        self.assertEqual(config.auth.users[0].password, "p w")
        self.assertEqual(config.webhook.headers, (("X-Tenant", "a"),))
        self.assertEqual(config.ingest.secret, "tier-tier-tier-tier")

    def test_a_resolved_default_stays_resolved(self):
        # webhook.max_body_size follows ingest.max_body_size when unset: the child must
        # get the number in use, not a second resolution.
        config = self.roundtrip({"ingest": {"max_body_size": 5_000_000}})
        self.assertEqual(config.webhook.max_body_size, 5_000_000)

    def test_json_safe(self):
        import json
        document = config_document(parse_config({"auth": {"users": [
            {"username": "u", "password": "p"}]}}))
        self.assertEqual(json.loads(json.dumps(document)), document)
