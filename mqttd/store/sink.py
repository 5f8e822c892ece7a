"""The message sink: the one seam between the broker and durability.

A sink is where the broker puts every inbound PUBLISH (the webhook client, the
in-memory store of the broker core, a benchmark's stand-in). Named for what it is, so
"store" keeps meaning the database. The broker acknowledges a QoS 1/2 message
(PUBACK / PUBREC) only when the sink said it is committed. If it failed, the
message was NOT stored: the broker sends no acknowledgement and closes the connection
so the device retransmits. The durable ingest tier (webhook + SQLite) implements this
same interface; the in-memory store is the broker-core default and answers at once.

Two ways to hand a message over:

* ``store(message) -> Deferred`` (IMessageSink): every store has it; tests and rare
  paths use it.
* ``submit(message, notify, token)`` (ISubmittingMessageSink, optional): the hot path.
  A Deferred per message (creation, ``addCallbacks``, ``_runCallbacks``) was ~16 % of the
  broker's CPU under durable QoS 1 load, and one ack write per message another few %.
  ``submit`` settles messages with one plain call per *group*: the store hands back the
  tokens of all the messages it settles together for one submitter, so the broker
  marks them and writes their acks with one ``transport.write``. Nothing is shared
  between submitters (no Deferred whose callback chain one consumer could change for
  another): each ``notify`` gets its own call, and a failed group never reaches a
  success path. ``submitter(store)`` gives the broker a ``submit`` for any store,
  adapting ``store()`` when a store does not provide the fast one.
"""
from typing import NamedTuple

from zope.interface import Interface

from mqttd.namespace import mounted, unmount


class Message(NamedTuple):
    """One inbound application message, as it will be stored.

    ``key`` is unique per received PUBLISH and stays the same on every retry, so a retried
    write never duplicates a row.

    Why a NamedTuple and not an attrs class: one is built per received PUBLISH, and
    attrs' frozen ``__init__`` (an ``object.__setattr__`` per field) cost 3x a tuple's
    construction. It is still an immutable value with attribute access, a keyword
    ``repr`` and, as before, equality only with another Message (a plain tuple of the
    same fields is not equal). Field order is the row order (``ROW``), which the wire
    format and the SQLite store take from here.
    """

    key: str
    client_id: str
    username: str | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float

    def __eq__(self, other):
        return type(other) is Message and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = tuple.__hash__


ROW = Message._fields + ("account",)
"""The one row layout: what a stored message holds, in order. A row tuple (what
``mqttd.ingest.wire.decode_batch`` builds and ``mqttd.store.sqlite`` inserts) holds a
Message's values in the same order, then its account; its topic is the device's own.

A Message's topic is the broker's, mounted in its account's namespace
(``mqttd.namespace``: ``$a/ACCOUNT/`` + the device's topic); a row splits it into the
device's topic and the account (NULL without one), so that users query (account,
topic) and never see the mount. ``message_row`` and ``row_message`` go each way."""


def message_row(message):
    """A Message value as a row tuple (``ROW`` order)."""
    account, topic = unmount(message.topic)
    return (message.key, message.client_id, message.username, topic, message.payload,
            message.qos, message.retain, message.received_at, account)


def row_message(key, client_id, username, topic, payload, qos, retain, received_at,
                account):
    """The Message of a row's values (read back from ``messages``: bytes, a bool)."""
    return Message(key, client_id, username, mounted(account, topic), bytes(payload), qos,
                   bool(retain), received_at)


class StoreRejected(Exception):
    """The store did not take the message (it is not stored); an expected outcome.

    ``reason`` is a short stable key (``ack timeout``, ``overload``, ``refused``, ...)
    used in counters and logs. Anything else a store fails with is a bug.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class IMessageSink(Interface):
    def store(message):
        """Persist ``message``; return a Deferred that fires once it is committed.

        It fails (a StoreRejected for expected refusals) if the message is not stored.
        """


class ISubmittingMessageSink(IMessageSink):
    """A store that can also settle messages without a Deferred each (the hot path)."""

    def submit(message, notify, token):
        """Persist ``message``; later call ``notify(tokens, failure)`` with its ``token``.

        ``tokens`` is a list holding ``token`` and possibly the tokens of other messages
        submitted with the same ``notify`` (the same object, compared by identity) that
        the store settles at the same moment, in the order they were submitted.
        ``failure`` is None when all of them are committed, else a
        ``twisted.python.failure.Failure`` (a StoreRejected for expected refusals) and
        none of them is known to be stored. Each token is settled exactly once; that may
        happen before ``submit`` returns (a store that answers at once, or refuses at
        once). Returns None. An exception raised by ``notify`` is logged by the store and
        does not affect other submitters.

        Such a store may also have ``forget(notify)``: the broker calls it when the
        connection behind ``notify`` closed, and at once for a ``notify`` that stands
        for no connection (its wills'), so batching need not wait for it to submit
        again. Its messages still in flight settle as usual. And ``pressure`` (a
        ``mqttd.store.pressure.Pressure``): while it is full the broker stops reading
        from the connections that publish, instead of having their messages refused.
        """


def submitter(store):
    """``store``'s own ``submit`` if it has one, else one that adapts ``store()``.

    The adapter keeps stores that only return Deferreds (tests, third parties) working
    through the same broker code: each message still gets its own Deferred, and the
    tokens come back one at a time.
    """
    if ISubmittingMessageSink.providedBy(store):
        return store.submit
    store_one = store.store

    def submit(message, notify, token):
        store_one(message).addCallbacks(_committed, _not_committed,
                                        callbackArgs=(notify, token),
                                        errbackArgs=(notify, token))

    return submit


def _committed(_, notify, token):
    notify([token], None)


def _not_committed(failure, notify, token):
    notify([token], failure)
    return None  # handled: the failure was passed on to notify
