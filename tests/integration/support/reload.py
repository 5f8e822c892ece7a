"""SIGHUP for a running broker's tests: rewrite its configuration file, signal it, and
wait for the log line that says how it took it."""
import os
import signal

from tests.integration.support.common import wait_for

__all__ = ["hup", "rewrite_config"]


def rewrite_config(broker, text):
    """Replace the file the broker was started with (its next SIGHUP reads it)."""
    with open(os.path.join(broker.workdir, "mqttd.toml"), "w") as f:
        f.write(text)


def hup(broker, expect, count=1, timeout=5.0):
    """SIGHUP the broker and wait until ``expect`` was logged ``count`` times more."""
    seen = broker.output().count(expect)
    broker.process.send_signal(signal.SIGHUP)
    wait_for(lambda: broker.output().count(expect) >= seen + count, timeout,
             message=f"log line {expect!r} x{count}", context=broker.tail)
