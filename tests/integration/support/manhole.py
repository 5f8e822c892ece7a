"""The real appliance's operator side: its manhole over telnet, its report over HTTP.

``manhole_setup(case)`` writes a password file for ``case`` and gives the ``[manage]``
lines that turn the manhole on (an ephemeral loopback port, said in the log);
``manhole_port(broker)`` reads it; ``manhole_session(case, broker)`` is a logged-in
``ManholeClient`` (mqttd's own client, the one ``mqttd manhole`` drives), closed at
cleanup. ``report_url(broker)`` is /report beside the broker's /metrics.
"""
import os
import re

from mqttd.manage.manhole_client import ManholeClient, connect
from tests.integration.support.common import HOST, wait_for

__all__ = ["PASSWORD", "USER", "manhole_port", "manhole_session", "manhole_setup",
           "report_url"]

USER = "admin"
PASSWORD = "Zq8sV2nW4pL7xK1mB9tR3yH6cJ5dF0gA"  # as the package makes one: 32 of A-Za-z0-9

_LISTENING = re.compile(r"manhole listening on [\d.]+:(\d+)")


def manhole_setup(case):
    """(the [manage] section that turns the manhole on, the password file's path)."""
    path = os.path.abspath(case.mktemp())
    with open(path, "w") as f:
        f.write(f"{USER}:{PASSWORD}\n")
    os.chmod(path, 0o640)
    section = (f'[manage]\nmanhole_listen = "tcp:0:interface={HOST}"\n'
               f'manhole_password_file = "{path}"\n')
    return section, path


def manhole_port(broker):
    match = wait_for(lambda: _LISTENING.search(broker.output()), message="the manhole's port",
                     context=broker.tail)
    return int(match.group(1))


def manhole_session(case, broker, user=USER, password=PASSWORD, timeout=10.0):
    """A ManholeClient logged in to ``broker``'s manhole (LoginRefused if it says no)."""
    client = ManholeClient(connect((HOST, manhole_port(broker)), timeout), timeout)
    case.addCleanup(client.close)
    client.login(user, password)
    return client


def report_url(broker):
    url = wait_for(lambda: broker.metrics_url, message="the metrics URL", context=broker.tail)
    return url.rsplit("/", 1)[0] + "/report"
