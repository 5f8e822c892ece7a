"""A clean stop: what was read is committed and acknowledged before anything closes.

``SequentialStop`` stops its children one after another, in reverse order of addition,
each only once the one before it has finished; Twisted's MultiService stops them all at
once, so the ingest tier would close while the broker still sends it the last batches.

``BrokerStop`` is the broker's part, in order: no connection reads any more; the sink
sends what it holds at once and waits for every answer (at most ``drain_timeout``), so
each message already read gets its PUBACK/PUBREC; then every connection closes, its
acknowledgements written first (at most ``close_timeout``); then the sink stops and
its pooled connections close.
"""
from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, TimeoutError, inlineCallbacks
from twisted.logger import Logger

log = Logger()


class SequentialStop(MultiService):
    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        for service in reversed(list(self)):
            try:
                yield service.stopService()
            except Exception:
                log.failure("stopping {service} failed", service=service)


class BrokerStop(Service):
    def __init__(self, clock, broker, sink, pool, drain_timeout, close_timeout=2.0):
        self._clock = clock
        self._broker = broker
        self._sink = sink
        self._pool = pool
        self._drain_timeout = drain_timeout
        self._close_timeout = close_timeout

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        broker = self._broker
        if broker is not None:
            broker.stop_reading()
        yield self._sink.drain(self._drain_timeout)
        if broker is not None:
            closed = broker.disconnect_all()
            closed.addTimeout(self._close_timeout, self._clock)
            try:
                yield closed
            except TimeoutError:
                log.warn("connections still open {timeout} s after the stop; leaving "
                         "them to the reactor", timeout=self._close_timeout)
        self._sink.stop()
        yield DeferredList([self._pool.closeCachedConnections()], consumeErrors=True)
