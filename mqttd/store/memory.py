"""The in-memory message store: fires at once, keeps a bounded tail for inspection."""
from collections import deque

from twisted.internet.defer import succeed
from zope.interface import implementer

from mqttd.store.sink import ISubmittingMessageSink


@implementer(ISubmittingMessageSink)
class InMemorySink:
    """Acknowledges immediately. Not durable: the ingest tier replaces it."""

    def __init__(self, keep=10000):
        self.messages = deque(maxlen=keep)
        self.count = 0

    def store(self, message):
        self.messages.append(message)
        self.count += 1
        return succeed(None)

    def submit(self, message, notify, token):
        """Settled before returning: there is nothing to wait for."""
        self.messages.append(message)
        self.count += 1
        notify([token], None)
