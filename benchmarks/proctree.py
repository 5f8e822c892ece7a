"""A broker's whole process tree from /proc: each process's name, CPU and RSS.

With ``server.workers`` >= 1 one ``twistd mqttd`` is a master, N broker workers and an
ingest child (spawned by the master, so its children in /proc), each naming itself with
prctl (``mqttd-master``, ``mqttd-worker-1``, ``mqttd-ingest``). A figure of "the broker"
must sum all of them, and the tables split it by process, so one snapshot reads every
descendant of the root pid once: its comm, its CPU ticks (utime + stime, plus cutime +
cstime: the children it already reaped, so a worker that died during a run still
counts, once) and its VmRSS. Deliberately no mqttd import (as common.py).

``proc`` is the /proc root to read, so the tests can build a small fake one.
"""
import os

import attrs

__all__ = ["Proc", "snapshot", "total_ticks", "total_rss", "ticks_by_name", "rss_by_name",
           "role", "by_role"]


@attrs.frozen
class Proc:
    pid: int
    ppid: int
    name: str  # the kernel's comm (what prctl(PR_SET_NAME) set)
    ticks: int  # utime + stime + cutime + cstime, clock ticks
    rss: int  # VmRSS bytes (0 for a zombie)


def parse_stat(text):
    """(comm, ppid, ticks) from the text of /proc/PID/stat. The comm may hold spaces
    and parentheses: it runs from the first '(' to the last ')'."""
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is the state, [1] ppid; utime stime cutime cstime are stat fields 14-17
    return comm, int(fields[1]), sum(int(x) for x in fields[11:15])


def parse_rss(text):
    """VmRSS bytes from the text of /proc/PID/status (0 when absent: a zombie)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _read(path):
    with open(path) as f:
        return f.read()


def _parents(proc):
    """pid -> ppid of every process in ``proc`` (one scan)."""
    out = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            _, ppid, _ = parse_stat(_read(os.path.join(proc, name, "stat")))
        except (OSError, ValueError):
            continue  # gone since the listing
        out[int(name)] = ppid
    return out


def descendants(pid, proc="/proc"):
    """``pid`` and every descendant of it, parents before children."""
    children = {}
    for child, parent in _parents(proc).items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(sorted(children.get(p, ())))
    return out


def snapshot(pid, proc="/proc"):
    """[Proc] of ``pid`` and its descendants (root first); [] when ``pid`` is gone.
    A descendant that exits between the scan and its read is left out (its CPU shows
    in its parent's cutime once reaped)."""
    out = []
    for p in descendants(pid, proc):
        base = os.path.join(proc, str(p))
        try:
            comm, ppid, ticks = parse_stat(_read(os.path.join(base, "stat")))
            rss = parse_rss(_read(os.path.join(base, "status")))
        except (OSError, ValueError):
            if p == pid:
                return []
            continue
        out.append(Proc(p, ppid, comm, ticks, rss))
    return out


def total_ticks(procs):
    return sum(p.ticks for p in procs) if procs else None


def total_rss(procs):
    return sum(p.rss for p in procs) if procs else None


def _by_name(procs, field):
    out = {}
    for p in procs:
        out[p.name] = out.get(p.name, 0) + getattr(p, field)
    return out


def ticks_by_name(before, after):
    """{name: ticks spent between two snapshots}; a process only in ``after`` (started
    in between) counts from 0."""
    b = _by_name(before, "ticks")
    return {name: t - b.get(name, 0) for name, t in _by_name(after, "ticks").items()}


def rss_by_name(procs):
    return _by_name(procs, "rss")


def role(name):
    """``mqttd-worker-3`` -> ``workers``; ``mqttd-master`` -> ``master``,
    ``mqttd-ingest`` -> ``ingest``; any other name (twistd, mosquitto) is its own."""
    if name.startswith("mqttd-worker-"):
        return "workers"
    if name.startswith("mqttd-"):
        return name[len("mqttd-"):]
    return name


def by_role(values):
    """{name: number} summed by ``role(name)``."""
    out = {}
    for name, v in values.items():
        out[role(name)] = out.get(role(name), 0) + v
    return out
