"""``python -m mqttd.tree.child``: one child of the master, a broker worker or the ingest tier.

The master writes the child's whole brief as one JSON document to its stdin and closes
it: the role, its slot, the configuration (``config_document``: the child validates it
again, and never rereads a file that may have changed since the master started), and
the role's extra facts (the ingest URL, the inherited fds). Secrets travel only down
that pipe, never in argv or the environment, where other users could read them.

A child logs text lines to stdout, which the master's supervisor relays under the
child's name, so one journal (or twistd log) holds the whole tree. It dies with its
master (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the master never leaves a worker
holding clients and sockets behind it.
"""
import ctypes
import json
import signal
import sys

from twisted.internet.error import ReactorNotRunning
from twisted.logger import eventAsText, globalLogBeginner, Logger

from mqttd.config import parse_config
from mqttd.errors import ConfigError
from mqttd.tree.proctitle import set_process_name

log = Logger()

_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask Linux for SIGTERM when the master goes, however it goes (best effort)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _to_stdout(event):
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _roles():
    from mqttd.tree.ingest import build_ingest
    from mqttd.tree.worker import build_worker
    return {"worker": build_worker, "ingest": build_ingest}


def run(brief, reactor):
    """Build the role's service from ``brief`` and run it until the reactor stops."""
    role = brief["role"]
    builders = _roles()
    if role not in builders:
        raise SystemExit(f"mqttd child: unknown role {role!r}")
    config = parse_config(brief["config"])
    service = builders[role](config, reactor, brief)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.callWhenRunning(_stop_on_signals, reactor)
    reactor.run()


def _stop_on_signals(reactor):
    """SIGTERM or SIGINT stops the reactor once, however many arrive: the master sends
    one, and so does systemd (or a terminal's Ctrl-C) to the whole group."""
    def stop():
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping

    def handler(signum, frame):
        reactor.callFromThread(stop)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def main():
    die_with_parent()
    brief = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    set_process_name(brief.get("name", "mqttd-child"))
    globalLogBeginner.beginLoggingTo([_to_stdout], redirectStandardIO=False)
    from twisted.internet import reactor
    try:
        run(brief, reactor)
    except ConfigError as e:
        raise SystemExit(f"mqttd: configuration error: {e}") from None


if __name__ == "__main__":
    main()
