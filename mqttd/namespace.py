"""An account's topic namespace: its mount point, shared by the broker, store and ingest.

A client of account A publishes and subscribes in its own view (``/v1.6/devices/x``);
inside the broker that topic is ``$a/A//v1.6/devices/x`` (``MOUNT_ROOT`` + A + "/" + the
topic, as EMQX's ``mountpoint``). Why a ``$`` first level: a wildcard first level never
matches a ``$`` topic [MQTT-4.7.2-1], so no client's ``#`` or ``+/...`` ever sees another
tenant's messages, and two accounts' ``/v1.6/devices/x`` are two topics. Clients without
an account may not use ``$a/`` at all (``reserved``), so the mount is the only way in.

Everything inside the broker (the subscription trie, the retained set, wills, the tree's
forwarding, the ``retained`` table) holds the mounted topic; a ``messages`` row holds the
device's own topic and the account beside it (``unmount``), and reading one back mounts
it again (``mounted``). Account names never hold a "/" (``ACCOUNT_NAME``), so the mount
ends at the first "/" after the root and ``unmount`` is exact.

Persistent sessions are per (account, client id) for the same reason (``session_key``):
two tenants' "dev-1" are two sessions, and neither takes over the other.
"""
import re

__all__ = ["ACCOUNT_NAME", "MOUNT_ROOT", "mount_length", "mount_of", "mounted", "reserved",
           "session_key", "unmount", "valid_account"]

MOUNT_ROOT = "$a/"
"""The first level of every mounted topic (reserved: no client names it itself)."""

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An account's name: the rule of the accounts table, the CLI and ``auth.users.account``."""


def valid_account(name):
    return type(name) is str and ACCOUNT_NAME.fullmatch(name) is not None


def mount_of(account):
    """The prefix of ``account``'s topics ("" for no account)."""
    return "" if account is None else f"{MOUNT_ROOT}{account}/"


def mounted(account, topic):
    """``topic`` (a name or a filter, in the client's view) as the broker holds it."""
    return topic if account is None else f"{MOUNT_ROOT}{account}/{topic}"


def unmount(topic):
    """(account, the client's own topic) of a topic as the broker holds it."""
    if not topic.startswith(MOUNT_ROOT):
        return None, topic
    end = topic.find("/", len(MOUNT_ROOT))
    if end < 0:  # not a mounted topic (nothing mounts one): keep it whole
        return None, topic
    return topic[len(MOUNT_ROOT):end], topic[end + 1:]


def reserved(topic):
    """Is ``topic`` (a name or filter) inside the mounts, out of bounds for a client
    without an account? A filter whose first level is a wildcard is not: it matches no
    ``$`` topic."""
    return topic.startswith(MOUNT_ROOT) or topic == "$a"


def mount_length(key):
    """How many characters of a topic the session of ``key`` (a ``session_key``) does
    not see: its account's mount (0 without one)."""
    if not key.startswith(MOUNT_ROOT):
        return 0
    end = key.find("/", len(MOUNT_ROOT))
    return 0 if end < 0 else end + 1


def session_key(account, client_id):
    """The key of the session of ``client_id`` in ``account``: per tenant."""
    return client_id if account is None else f"{MOUNT_ROOT}{account}/{client_id}"
