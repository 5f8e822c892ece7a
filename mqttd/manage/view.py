"""What the manhole's helpers and the report read: one appliance, the tree or one process.

Both run where the listeners are: the master of the tree (whose door, gate and summed
metrics already span every worker) or the single process. ``ApplianceView`` is the
one face of either, so every helper answers for the whole appliance the same way:

- ``families()``: the tree's metric families, summed (``TreeMetrics``);
- ``door``: connections open by address; ``connect_rates``: connects by address over
  the last minute (``mqttd.manage.connect_rates``, fed by the door's ``watch``);
- ``gate``: live tickets, bans, flapping, kicks (``mqttd.edge.gate``); ``store``: the
  accounts and bans tables (``GateStore``);
- ``refusals``: refusals by limit over the last minute, hour and day
  (``mqttd.manage.history``);
- ``clients(wanted, limit)``: what only brokers know, asked of every worker
  (``tree_clients``) or of the one broker (``local_clients``);
- ``recent_events``: the per-client trace window's ``recent_events(client_id)``, and
  ``trace``: its rules (``trace_add``, ``trace_rm``, ``trace_list``); both None while
  the trace is off (``manage.trace_file`` empty: the helpers then say so).
"""
import attrs
from twisted.internet.defer import maybeDeferred

from mqttd.manage.client_list import ClientFilter, describe_clients
from mqttd.manage.questions import Unanswered

__all__ = ["ApplianceView", "clients_question", "local_clients", "tree_clients"]


@attrs.define(eq=False)
class ApplianceView:
    clock: object
    config: object
    mode: str  # "tree" or "single"
    families: object  # () -> iterable of tree_metrics.Family
    door: object
    gate: object
    store: object
    connect_rates: object
    refusals: object
    clients: object  # (ClientFilter, limit) -> Deferred of the merged answer
    recent_events: object = None
    watch: object = None  # mqttd.manage.watch.Watch: alerts(), gaps(), canary_status()
    trace: object = None  # mqttd.manage.trace_service.TraceService (its rules)
    started: float = attrs.field(default=None)

    def __attrs_post_init__(self):
        if self.started is None:
            self.started = self.clock.seconds()


def _args(wanted, limit):
    return dict(wanted.as_args(), limit=limit)


def clients_question(broker, process, static_users):
    """A worker's handler of the master's ``clients`` question (``Answerer``)."""
    def answer(args):
        wanted = ClientFilter(args.get("ip"), args.get("account"), args.get("client_id"))
        limit = args.get("limit")
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
        return describe_clients(broker, process, wanted, limit, static_users)
    return answer


def merge(answers, limit):
    """One ``clients()`` answer of several brokers' (``{process: answer or Unanswered}``):
    every entry by client id, at most ``limit``, with what matched and who did not say."""
    clients, matched, unanswered = [], 0, {}
    for process, answer in sorted(answers.items()):
        if isinstance(answer, Unanswered) or not isinstance(answer, dict):
            unanswered[process] = getattr(answer, "reason", "not an answer")
            continue
        clients.extend(entry for entry in answer.get("clients", ()) if isinstance(entry, dict))
        matched += answer.get("matched", 0) if isinstance(answer.get("matched"), int) else 0
    clients.sort(key=lambda entry: (str(entry.get("client_id")), str(entry.get("account"))))
    return {"clients": clients[:limit], "matched": matched, "unanswered": unanswered}


def tree_clients(questions):
    """``clients`` of the master: every live worker asked at once (``Questions``)."""
    def clients(wanted, limit):
        d = questions.ask_all("clients", _args(wanted, limit))
        return d.addCallback(merge, limit)
    return clients


def local_clients(broker, process, static_users):
    """``clients`` of the single process: its own broker, asked in-process, answered as
    a worker would be (the same handler, so both modes list the same fields)."""
    handler = clients_question(broker, process, static_users)

    def clients(wanted, limit):
        d = maybeDeferred(handler, _args(wanted, limit))
        return d.addCallback(lambda answer: merge({process: answer}, limit))
    return clients
