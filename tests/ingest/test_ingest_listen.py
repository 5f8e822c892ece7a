"""The ingest webhook listens on loopback unless the config says otherwise (issue 11).

It writes straight into the database: ``tcp:0`` (every interface) is refused at start,
with one line naming ``ingest.listen``, unless ``ingest.allow_remote = true``.
"""
from twisted.internet import defer, reactor
from twisted.trial import unittest

from mqttd.config import ConfigError, parse_config
from mqttd.service import build_service


class LoopbackOnlyTests(unittest.TestCase):
    def build(self, **ingest):
        # workers = 0: build_service builds the one process (the default is the tree).
        config = parse_config({"server": {"workers": 0, "data_dir": self.mktemp(),
                                          "listen": ["tcp:0:interface=127.0.0.1"]},
                               "ingest": ingest})
        return build_service(config, reactor)

    @defer.inlineCallbacks
    def test_every_interface_is_refused_unless_allowed(self):
        for listen, host in (("tcp:0", "0.0.0.0"), ("tcp6:0", "::")):
            root = self.build(listen=listen)
            with self.assertRaises(SystemExit) as caught:
                root.ingest.privilegedStartService()
            self.assertEqual(
                str(caught.exception),
                f"mqttd: configuration error: ingest.listen: listens on {host}, not on a "
                f"loopback address; the webhook writes straight into the database: use "
                f"interface=127.0.0.1, or set ingest.allow_remote = true to face the network")
            self.assertIsNone(root.webhook.url)  # the broker was not told of it
            yield root.ingest.stopService()  # the port is closed (nothing left to stop)
        root = self.build(listen="tcp:0", allow_remote=True, secret="s" * 16)
        root.ingest.privilegedStartService()
        self.addCleanup(root.ingest.stopService)
        self.assertRegex(root.webhook.url, r"^http://0\.0\.0\.0:\d+/v1/messages$")

    def test_allow_remote_needs_a_secret(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ingest": {"allow_remote": True}})
        self.assertEqual(str(caught.exception),
                         "ingest.allow_remote: needs ingest.secret (the brokers posting from "
                         "elsewhere must know it; one made at start is known to nobody)")
