"""For the few tests that need real loopback sockets (what only a real TLS transport or a
stalled peer shows): wait for an event where there is one, always bounded."""
from twisted.internet import defer, reactor, task


def within(d, seconds):
    """``d``, failing with TimeoutError if it has not fired within ``seconds``."""
    return d.addTimeout(seconds, reactor)


def when_called(obj, name):
    """A Deferred fired (once) after the first call of ``obj.name(...)``, on the next
    reactor turn, so that whoever called it has finished (firing inside the call would
    run the waiting test in the middle of the code under test). The call itself goes
    through unchanged."""
    fired = defer.Deferred()
    original = getattr(obj, name)
    calls = []

    def calling(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(None)
        if len(calls) == 1:
            reactor.callLater(0, fired.callback, None)
        return result

    setattr(obj, name, calling)
    return fired


async def until(predicate, seconds, step=0.02):
    """True as soon as ``predicate()`` is; False if it still is not after ``seconds``.

    Only for what raises no event to wait for (a client socket closed while its peer
    reads nothing cannot be seen from the peer's side)."""
    for _ in range(int(seconds / step)):
        if predicate():
            return True
        await task.deferLater(reactor, step, lambda: None)
    return predicate()
