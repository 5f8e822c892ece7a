"""``mqttd manhole``: the running appliance's telnet manhole, from the shell.

    mqttd manhole                      an interactive prompt (a terminal is needed)
    mqttd manhole -e 'report()' ...    run each expression, print what it printed, exit

It connects to ``manage.manhole_listen`` (or ``--endpoint``) and logs in with the
first user of ``manage.manhole_password_file`` (or ``--password-file``, ``--user``):
the package's /etc/mqttd/manhole.passwd is root:mqttd 0640, so run it as root or as
the mqttd user. Without a password file it asks for the user and password.

Exit status 0: done; 1: not reached, refused, or (with ``-e``) an expression that
raised; 2: a usage error.
"""
import getpass
import os
import signal
import sys
import termios
import tty

from mqttd.errors import ConfigError
from mqttd.manage.manhole_client import ManholeClient, ManholeError, connect
from mqttd.manage.passwords import read_password_file
from mqttd.manage.report_cli import ReportError, endpoint_address

__all__ = ["NAME", "add_command"]

NAME = "manhole"
HELP = "the running appliance's telnet manhole: a Python prompt with helpers (help())"
TIMEOUT = 30.0


def _credentials(args, config, stdin):
    path = args.password_file or config.manage.manhole_password_file
    if path:
        users = read_password_file(path)
        user = args.user or ("admin" if "admin" in users or len(users) != 1
                             else next(iter(users)))
        if user not in users:
            raise ManholeError(f"no user {user!r} in {path} (--user)")
        return user, users[user].decode("utf-8", "replace")
    if not stdin.isatty():
        raise ManholeError("no password file (manage.manhole_password_file, "
                           "--password-file) and no terminal to ask on")
    user = args.user or input("manhole user: ")
    return user, getpass.getpass("manhole password: ")


def _failed(text):
    return "Traceback (most recent call last):" in text or any(
        line.startswith("error: ") for line in text.splitlines())


def _interact(client, stdin, stdout, stderr):
    if not stdin.isatty():
        raise ManholeError("not a terminal: use -e EXPRESSION to run expressions")
    fd = stdin.fileno()
    stderr.write("connected; Ctrl-D at an empty prompt leaves\n")
    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGWINCH, lambda *_: client.resized(os.get_terminal_size(fd)))
    try:
        tty.setraw(fd)
        client.interact(fd, stdout.buffer if hasattr(stdout, "buffer") else stdout)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
    stdout.write("\n")


def _run(args, config, stdout, stderr, stdin=None):
    stdin = sys.stdin if stdin is None else stdin
    try:
        where = (endpoint_address("--endpoint", args.endpoint) if args.endpoint else
                 endpoint_address("manage.manhole_listen", config.manage.manhole_listen))
        user, password = _credentials(args, config, stdin)
        size = (80, 24)
        if not args.eval and stdin.isatty():
            size = tuple(os.get_terminal_size(stdin.fileno()))
        client = ManholeClient(connect(where, args.timeout), args.timeout, size)
        try:
            client.login(user, password)
            if not args.eval:
                _interact(client, stdin, stdout, stderr)
                return 0
            status = 0
            for source in args.eval:
                text = client.run(source)
                if text:
                    stdout.write(text + "\n")
                status = 1 if _failed(text) else status
            return status
        finally:
            client.close()
    except (ManholeError, ReportError, ConfigError) as e:
        stderr.write(f"mqttd: {e}\n")
        return 1


def add_command(groups, config_option):
    parser = groups.add_parser(NAME, parents=[config_option], help=HELP, description=HELP)
    parser.add_argument("-e", "--eval", action="append", metavar="EXPRESSION",
                        help="run this line at the prompt and print its output "
                             "(repeatable); without it, an interactive prompt")
    parser.add_argument("--endpoint", metavar="ENDPOINT",
                        help="where the manhole listens (default: manage.manhole_listen), "
                             "e.g. tcp:9884:interface=127.0.0.1 or unix:/run/mqttd/manhole")
    parser.add_argument("--user", metavar="USER",
                        help="who logs in (default: admin, or the file's only user)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="USER:PASSWORD lines (default: manage.manhole_password_file)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                        help=f"give up on an answer after this long (default {TIMEOUT:g})")
    parser.set_defaults(direct=_run)
