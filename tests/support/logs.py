"""What the broker logged during a test: ``capture_logs`` collects every event of the
global log publisher until the test ends; ``disconnect_reasons`` reads the reason of
each disconnect line, which several protocol and limit tests compare.
"""
from twisted.logger import globalLogPublisher


def capture_logs(case):
    events = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def disconnect_reasons(events):
    return [e["reason"] for e in events
            if e.get("log_format", "").startswith("disconnect")]
