"""How many CPU cores this process may run on: the default of ``server.workers``.

The scheduler's affinity mask, not the machine's count: a container or a ``taskset``
given two of 64 cores runs best with two workers, where ``os.cpu_count()`` says 64.
(A cgroup CPU quota without a cpuset is not seen: set ``server.workers`` there.)
"""
import os

#: The most ``server.workers`` allows.
MAX_WORKERS = 256


def usable_cores():
    """The cores this process may run on, 1..MAX_WORKERS."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: no affinity call
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_WORKERS))
