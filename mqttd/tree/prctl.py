"""Linux process controls the tree needs, through prctl(2) (best effort, no dependency).

``set_process_name`` names a process in ``ps -o comm``, ``top`` and the journal
(``mqttd-master``, ``mqttd-worker-1``, ``mqttd-ingest``): an operator must see at once
which process of the tree is busy or gone. ``die_with_parent`` makes a child get SIGTERM
when its master dies, however it dies, so a ``kill -9`` of the master leaves no worker
holding sockets behind it.
"""
import ctypes
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option, value):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def set_process_name(name):
    """Name this process (at most 15 bytes are kept by the kernel)."""
    return _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode("utf-8")[:15]))


def die_with_parent():
    """Ask for SIGTERM when the parent process goes."""
    return _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
