"""Looking at a running mqttd tree from outside, as an operator would: its processes and
which of them holds a given client's connection (from /proc, no help from mqttd)."""
import os
import queue
import time

from mqttd.edge.balancer import Balancer
from tests.integration.support.common import DEFAULT_TIMEOUT
from tests.integration.support.peers import server_side_inodes


def children(pid):
    """The pids of ``pid``'s direct children."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def comm(pid):
    """A process's name as ``ps -o comm`` shows it."""
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def named_children(pid):
    """{name: pid} of ``pid``'s children (``mqttd-worker-1``, ``mqttd-ingest``, ...)."""
    named = {}
    for child in children(pid):
        try:
            named[comm(child)] = child
        except FileNotFoundError:
            continue  # gone meanwhile
    return named


def wait_for_children(pid, names, timeout=DEFAULT_TIMEOUT):
    """{name: pid} once every one of ``names`` runs under ``pid``."""
    deadline = time.monotonic() + timeout
    while True:
        named = named_children(pid)
        if all(name in named for name in names):
            return named
        if time.monotonic() >= deadline:
            raise AssertionError(f"children {sorted(names)} not all up; have {named}")
        time.sleep(0.05)


def wait_for_new_pid(master, names, name, old, timeout=15.0):
    """{name: pid} of ``master``'s ``names`` once ``name`` runs with a pid other than
    ``old`` (it was restarted)."""
    deadline = time.monotonic() + timeout
    while True:
        procs = wait_for_children(master, names)
        if procs[name] != old:
            return procs
        if time.monotonic() >= deadline:
            raise AssertionError(f"{name} was not restarted")
        time.sleep(0.05)


def owner(client_socket, pids, timeout=2.0):
    """Which of ``pids`` holds the broker's end of ``client_socket``'s connection (None
    if none does within ``timeout``)."""
    address = client_socket.getsockname()
    deadline = time.monotonic() + timeout
    while True:
        pid = _owner(server_side_inodes(address), pids)
        if pid is not None or time.monotonic() >= deadline:
            return pid
        time.sleep(0.02)


def _owner(inodes, pids):
    targets = {f"socket:[{inode}]" for inode in inodes}
    if not targets:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return pid
            except OSError:
                continue
    return None


def client_on(case, slot, prefix, procs, slots=(1, 2), **kwargs):
    """A connected client of ``case`` (a BrokerTestCase) whose connection the worker in
    ``slot`` holds: its client id chosen with the balancer's hash, where it landed
    checked from /proc. ``procs``: {name: pid} of the tree's children."""
    homes = Balancer(slots)
    n = 0
    while True:
        n += 1
        client_id = f"{prefix}-{slot}-{n}-{os.getpid() % 10000}"
        if homes.home(client_id) == slot:
            break
    client = case.client(client_id, **kwargs)
    pids = [procs[f"mqttd-worker-{s}"] for s in slots]
    case.assertEqual(owner(client.client.socket(), pids), procs[f"mqttd-worker-{slot}"],
                     f"{client_id} is not on worker {slot}")
    return client


def cross_probes(publisher, subscriber, topic, context=None, tries=200):
    """Publish QoS 1 probes on ``topic`` until one reaches ``subscriber``, then drop them
    all: from then on the subscription is known on the publisher's worker (the tree
    announces a filter one trip after its SUBSCRIBE)."""
    for _ in range(tries):
        publisher.publish(topic, b"probe", qos=1)
        try:
            subscriber.messages.get(timeout=0.05)
        except queue.Empty:
            continue
        while True:  # a later probe never arrives before an earlier one
            try:
                subscriber.messages.get_nowait()
            except queue.Empty:
                return
    raise AssertionError(f"no probe on {topic!r} reached the subscriber\n"
                         f"{context() if context else ''}")
