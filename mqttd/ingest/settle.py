"""Telling the submitters of a batch its outcome: the webhook client's only way out.

The broker sends PUBACK / PUBREC from these calls and from nowhere else, so each rule
here is one the client keeps for every batch: consecutive messages of one submitter
(the same ``notify``, one connection's read usually) are told in ONE call, the broker's
hot path; every call gets its own Failure, so no submitter can change what another
sees; and a submitter whose ``notify`` raises does not keep the others unanswered.
"""
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["fire_deferreds", "settle", "tell"]

# The namespace of the line when the webhook client logged it itself.
log = Logger(namespace="mqttd.ingest.client")


def settle(waiters, error):
    """Tell every ``(notify, token)`` of ``waiters`` the outcome (``error`` None:
    committed), one call per run of one ``notify``."""
    run_notify = run = None
    for submitter, token in waiters:
        if submitter is run_notify:
            run.append(token)
        else:
            if run is not None:
                tell(run_notify, run, error)
            run_notify, run = submitter, [token]
    if run is not None:
        tell(run_notify, run, error)


def tell(submitter, tokens, error):
    """``submitter(tokens, failure)``: a Failure of its own for ``error``, or None."""
    try:
        submitter(tokens, None if error is None else Failure(error))
    except Exception:
        # A broken submitter must not keep the others of its batch unanswered.
        log.failure("store notify failed for {n} messages", n=len(tokens))


def fire_deferreds(deferreds, failure):
    """``notify`` for ``WebhookSink.store``: fire each message's own Deferred."""
    if failure is None:
        for d in deferreds:
            d.callback(None)
    else:
        error = failure.value  # as before: one exception, a Failure per Deferred
        for d in deferreds:
            d.errback(error)
