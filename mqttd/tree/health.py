"""Whether the tree serves, for /healthz: every worker ready, the ingest child up, and
every child heard from within the metrics' ``stale_after`` (a hung one is not ready).

A reason names what is missing, so the 503 says what to look at, not only that
something is wrong.
"""
from mqttd.tree.proctitle import process_name

__all__ = ["tree_health"]


def tree_health(workers, balancer, tree_metrics, ingest=None):
    """(healthy, "ok" or the reasons) of a tree of ``workers`` slots (``balancer`` knows
    which are live); ``ingest`` is the ingest child's ``IngestLink``, None without one."""
    problems = []
    names = [(process_name("worker", slot), balancer.is_live(slot))
             for slot in range(1, workers + 1)]
    if ingest is not None:
        names.append((process_name("ingest"), ingest.up))
    for name, up in names:
        silent = tree_metrics.stale(name)
        if not up:
            problems.append(f"{name} not ready")
        elif silent is not None:
            problems.append(f"{name} silent for {silent:.1f} s")
    return (not problems, "; ".join(problems) or "ok")
