"""For the few tests that need real loopback sockets (what only a real TLS transport or a
stalled peer shows): waiting, bounded, for something to happen on the real reactor."""
from twisted.internet import reactor, task


async def until(predicate, seconds, step=0.02):
    """True as soon as ``predicate()`` is; False if it still is not after ``seconds``."""
    for _ in range(int(seconds / step)):
        if predicate():
            return True
        await task.deferLater(reactor, step, lambda: None)
    return predicate()
