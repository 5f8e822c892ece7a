"""The ``mqttd`` operator command: accounts, tokens and bans in the appliance's SQLite,
and the running appliance's report and manhole.

    mqttd accounts add|list|show|set|disable|enable ...
    mqttd tokens add|list|revoke ...
    mqttd bans add|list|rm ...
    mqttd trace add|list|rm ...
    mqttd report [--json]              (mqttd.manage.report_cli: asks the appliance)
    mqttd manhole [-e EXPRESSION ...]  (mqttd.manage.manhole_cli: its telnet manhole)

Each command takes ``--config FILE`` and ``--data-dir DIR`` as ``twistd mqttd`` does,
and ``--json`` (one JSON document on stdout, for scripts). Without ``--config`` the file
is ``$MQTTD_CONFIG``, else ``/etc/mqttd/mqttd.toml`` if it exists (the Debian package's),
else the built-in defaults; ``--data-dir`` overrides its ``server.data_dir``.

It opens DATA_DIR/mqttd.db, creating and migrating it with the ingest's own code
(``prepare_database``), so it works on a stopped appliance and on a running one alike:
SQLite's WAL lets it write beside the ingest, and a running master sees the change at
its next poll of ``gate_version`` and ``ban_version``. Run as root on a data dir that
another user owns (the package's ``mqttd``), it becomes that user first
(``privileges``), so no file of the database is ever root's.

Exit status 0: done; 1: an error, said in one line on stderr; 2: a usage error.
"""
import argparse
# sqlite_utils imports this at the first Database() (its plugins): imported here, before
# the switch to the data dir's owner, who may not be able to read this interpreter's
# files (a Python under /root, say).
import importlib.metadata  # noqa: F401
import json
import os
import pwd
import sqlite3
import sys
from contextlib import redirect_stderr, redirect_stdout

import attrs

from mqttd.config import load_config
from mqttd.errors import ConfigError
from mqttd.ingest.service import prepare_database
from mqttd.manage import (
    accounts_cli, bans_cli, manhole_cli, report_cli, tokens_cli, trace_cli)
from mqttd.manage.privileges import become_owner_of
from mqttd.store.data_dir import make_data_dir
from mqttd.store.accounts import AccountsError, wall_clock
from mqttd.store.gate_store import connect_gate
from mqttd.store.schema import SchemaError
from mqttd.store.sqlite import DB_FILENAME

__all__ = ["SYSTEM_CONFIG", "config_path", "main"]

SYSTEM_CONFIG = "/etc/mqttd/mqttd.toml"
CONFIG_VARIABLE = "MQTTD_CONFIG"
_GROUPS = (accounts_cli, tokens_cli, bans_cli, trace_cli)
_ASKING = (report_cli, manhole_cli)  # commands that ask the running appliance, not SQLite


class Failed(Exception):
    """What stops a command: its one line for stderr."""


@attrs.frozen(slots=True)
class Context:
    """What a command works with: the open database, the clock, who runs it, and the
    configuration's ``auth.users`` names (a username ban of any other is a token's)."""

    conn: sqlite3.Connection
    now: object
    operator: str
    static_users: frozenset = frozenset()


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block: the line names the command to ask.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _common_options():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE",
                        help=f"TOML configuration (default: ${CONFIG_VARIABLE}, else "
                             f"{SYSTEM_CONFIG} if it exists, else built-in defaults)")
    common.add_argument("-d", "--data-dir", metavar="DIR",
                        help="the appliance's data directory (replaces server.data_dir)")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document, for scripts")
    return common


def build_parser():
    parser = _Parser(prog="mqttd", description=(
        "Manage the mqttd appliance's accounts, tokens, bans and trace rules, running or "
        "stopped; ask the running one for its report, or open its manhole. (The broker "
        "itself runs as: twistd mqttd, or the packaged /usr/bin/mqttd.)"))
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    common = _common_options()
    for module in _GROUPS:
        group = groups.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
        module.add_commands(actions, common)
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument("-c", "--config", metavar="FILE", help=(
        f"TOML configuration, to find the appliance (default: ${CONFIG_VARIABLE}, else "
        f"{SYSTEM_CONFIG} if it exists, else built-in defaults)"))
    for module in _ASKING:
        module.add_command(groups, config_option)
    return parser


def _load(args, environ):
    try:
        return load_config(config_path(args.config, environ), {})
    except ConfigError as e:
        raise Failed(f"configuration error: {e}") from None


def config_path(option, environ, system=SYSTEM_CONFIG):
    """The configuration file to read: ``--config``, else $MQTTD_CONFIG, else ``system``
    if it exists; None: built-in defaults."""
    if option is not None:
        return option
    if environ.get(CONFIG_VARIABLE):
        return environ[CONFIG_VARIABLE]
    return system if os.path.exists(system) else None


def operator_name(environ):
    """Who runs the command, for a ban's ``who``: the sudo caller, else this login."""
    if environ.get("SUDO_USER"):
        return environ["SUDO_USER"]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def open_database(config):
    """DATA_DIR/mqttd.db, prepared, as the data dir's owner: (path, connection)."""
    try:
        data_dir = make_data_dir(config)
        try:
            become_owner_of(data_dir)
        except OSError as e:
            raise ConfigError(f"server.data_dir: cannot become the owner of {data_dir!r}: "
                              f"{e.strerror}") from None
        path = os.path.join(data_dir, DB_FILENAME)
        prepare_database(path)
    except ConfigError as e:
        raise Failed(str(e)) from None
    try:
        return path, connect_gate(path)
    except (sqlite3.Error, SchemaError) as e:
        raise Failed(f"database {path}: {e}") from None


def run(args, environ):
    """Load the configuration, open the database, run the command; its Output."""
    overrides = {} if args.data_dir is None else {"server.data_dir": args.data_dir}
    try:
        config = load_config(config_path(args.config, environ), overrides)
    except ConfigError as e:
        raise Failed(f"configuration error: {e}") from None
    operator = operator_name(environ)  # before the switch to the data dir's owner
    path, conn = open_database(config)
    try:
        static_users = frozenset(user.username for user in config.auth.users)
        return args.run(Context(conn, wall_clock, operator, static_users), args)
    except AccountsError as e:
        raise Failed(str(e)) from None
    except sqlite3.Error as e:
        raise Failed(f"database {path}: {type(e).__name__}: {e}") from None
    finally:
        conn.close()


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Run ``mqttd`` with ``argv`` (default: the command line); the exit status."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    environ = os.environ if environ is None else environ
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), a usage error (2)
        return e.code
    direct = getattr(args, "direct", None)
    if direct is not None:  # report, manhole: they ask the running appliance
        try:
            config = _load(args, environ)
        except Failed as e:
            stderr.write(f"mqttd: {e}\n")
            return 1
        return direct(args, config, stdout, stderr)
    try:
        output = run(args, environ)
    except Failed as e:
        stderr.write(f"mqttd: {e}\n")
        return 1
    if args.json:
        stdout.write(json.dumps(output.document, indent=2) + "\n")
    elif output.lines:
        stdout.write("\n".join(output.lines) + "\n")
    return 0
