"""Serve mqttd's broker core alone: the same Broker and protocol as `twistd mqttd`, with
the in-memory message store instead of the durable ingest path.

For benchmarking only (compare.py --core): it measures the MQTT broker itself beside
mosquitto, so a regression in the codec, sessions or ack path shows up even when the
durable path dominates. It acknowledges WITHOUT storing anything durably, which breaks
mqttd's promise, so it is deliberately not reachable from the mqttd command line.

    python benchmarks/core_broker.py --port 1883 [--config mqttd.toml]
"""
import argparse
import resource
import sys

from twisted.internet import epollreactor


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", help="mqttd TOML; only [broker] and [auth] are used")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from mqttd.broker.auth import StaticAuthenticator
    from mqttd.broker.broker import Broker
    from mqttd.broker.protocol import MQTTServerFactory
    from mqttd.config import load_config
    from mqttd.store.memory import InMemorySink
    from mqttd.tap import tune_gc

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    config = load_config(args.config)
    broker = Broker(reactor, config.broker, InMemorySink(keep=1),
                    StaticAuthenticator(config.auth))
    reactor.listenTCP(args.port, MQTTServerFactory(broker, reactor), backlog=4096,
                      interface="127.0.0.1")
    tune_gc(reactor)
    reactor.run()


if __name__ == "__main__":
    main()
