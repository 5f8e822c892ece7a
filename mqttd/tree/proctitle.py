"""Names for the processes of the tree, so that ``ps`` tells the master, the workers and
the ingest child apart.

``ps`` shows a process by two names: its command line (``ps -o args``, ``ps aux``,
systemd's status) and the kernel's comm of at most 15 bytes (``ps -e``, ``top``,
``pgrep``). The parent sets the command line; the process sets its own comm with
``prctl(PR_SET_NAME)``. The name does not go in argv[0]: CPython finds its virtualenv
(the Debian package is one) from argv[0], and a made-up one starts the child with the
system's site-packages, without mqttd. It rides as the last argument instead.
"""
import ctypes
import sys

__all__ = ["CHILD_MODULE", "child_argv", "process_name", "set_process_name"]

CHILD_MODULE = "mqttd.tree.child"
COMM_BYTES = 15  # TASK_COMM_LEN - 1
_PR_SET_NAME = 15


def process_name(role, index=None):
    """``mqttd-master``, ``mqttd-ingest``, ``mqttd-worker-3``: fits the comm for an
    index below 100, and is the label to give ``child_argv`` and ``set_process_name``."""
    return f"mqttd-{role}" if index is None else f"mqttd-{role}-{index}"


def child_argv(label, module=CHILD_MODULE):
    """The argv of a child: ``spawnProcess(protocol, argv[0], argv, ...)`` runs ``module``
    with this very interpreter (the virtualenv's), and ``label`` shows in ``ps -o args``
    after it; the child sees it as ``sys.argv[1]`` and may ignore it."""
    return [sys.executable, "-m", module, label]


def set_process_name(name):
    """Best effort: set the comm of the calling thread to ``name`` cut to 15 bytes.

    Called from the main thread before any thread starts, it names the process (threads
    started later inherit it). Returns whether it was set: False off Linux or without a
    C library that has ``prctl``; never raises.
    """
    if not sys.platform.startswith("linux"):
        return False
    encoded = name.encode("ascii", "replace")[:COMM_BYTES]
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    zero = ctypes.c_ulong(0)
    return prctl(_PR_SET_NAME, ctypes.c_char_p(encoded), zero, zero, zero) == 0
