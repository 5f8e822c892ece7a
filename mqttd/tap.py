"""Command line of `twistd mqttd`: the stable interface for operators, tests and packaging.

    twistd -n mqttd [--config FILE] [--listen ENDPOINT ...] [--data-dir DIR]
                    [--http-listen ENDPOINT]

``--listen`` (repeatable), ``--data-dir`` and ``--http-listen`` override ``server.listen``,
``server.data_dir`` and ``manage.http_listen`` from the file. The configuration is loaded and validated here, in
``postOptions``, so a bad file stops twistd with one line naming the key, before any
service starts.
"""
import gc

from twisted.python import usage

from mqttd.config import load_config
from mqttd.errors import ConfigError


class Options(usage.Options):
    synopsis = ("[--config FILE] [--listen ENDPOINT ...] [--data-dir DIR] "
                "[--http-listen ENDPOINT]")
    longdesc = (
        "Runs the mqttd MQTT broker. ENDPOINT is a Twisted server endpoint string, "
        "e.g. tcp:1883:interface=127.0.0.1 (the default) or ssl:8883:privateKey=key.pem."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: built-in defaults)."],
        ["data-dir", "d", None, "Directory for the database and other state (default ./var)."],
        ["http-listen", None, None,
         "Endpoint of /metrics and /healthz (replaces manage.http_listen; \"\" turns it off)."],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint):
        """Listen on this endpoint (repeatable; replaces server.listen)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self):
        overrides = {}
        if self["listen"]:
            overrides["server.listen"] = list(self["listen"])
        if self["data-dir"] is not None:
            overrides["server.data_dir"] = self["data-dir"]
        if self["http-listen"] is not None:
            overrides["manage.http_listen"] = self["http-listen"]
        self["overrides"] = overrides
        try:
            self["config_obj"] = load_config(self["config"], overrides)
        except ConfigError as e:
            # One line naming the key, not a page of usage text: the command line was fine.
            raise SystemExit(f"mqttd: configuration error: {e}") from None


# Young-generation collections scan every tracked object allocated since the last one;
# the publish path allocates a few short-lived objects per message (freed by reference
# counting, not the collector), so the default threshold of 700 makes the collector run
# thousands of times a second under load. Measured (benchmarks/README.md): +10% durable
# QoS 1 throughput and half the PUBACK p99 with these values and a freeze after start-up.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc(reactor):
    """Collect less often, and never rescan what start-up built (imports, config, trie)."""
    gc.set_threshold(*GC_THRESHOLDS)
    reactor.callWhenRunning(gc.freeze)


def makeService(options):
    from twisted.internet import reactor

    from mqttd.manage.watch import keeping_canary, with_canary
    from mqttd.service import build_service

    try:
        # The canary's user (manage.canary_interval), in the service and every reload.
        config = with_canary(options["config_obj"])
        if config.server.workers:
            from mqttd.tree.master import Master
            service = Master(reactor, config)
        else:
            service = build_service(config, reactor)
        # /metrics, /healthz, /report and the manhole (mqttd.manage.wiring).
        from mqttd.manage.wiring import add_manage
        add_manage(reactor, config, service)
    except ConfigError as e:
        raise SystemExit(f"mqttd: configuration error: {e}") from None
    from mqttd.reload import Reloader
    Reloader(reactor, options["config"], options["overrides"], config, service.door,
             service.reload_parts,
             load=keeping_canary(load_config, config)).setServiceParent(service)
    tune_gc(reactor)
    return service
