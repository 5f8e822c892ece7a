"""``mqttd trace add|rm|list``: which clients the per-client trace follows publish by publish.

    mqttd trace add client_id=dev-7 [--for SECONDS]    mqttd trace rm ip=10.0.0.0/8
    mqttd trace add username=ab12cd                     mqttd trace list [--all]

A rule traces every publish and acknowledgement of the clients it names (their
connects and disconnects are in the trace anyway) in ``manage.trace_file``. A running
appliance applies it within ``manage.trace_poll_interval`` (the rules are a table of
mqttd.db, ``mqttd.store.trace_rules``), to the clients already connected too. A rule
lasts ``--for`` seconds (one hour by default) or, with ``--until-removed``, until
``rm``. ``username=`` is a static user's name or a token user's token prefix (as
``mqttd tokens list`` shows it): never a token.
"""
from argparse import ArgumentTypeError

import attrs

from mqttd.manage.output import Output, seconds, table, when
from mqttd.manage.trace_service import DEFAULT_RULE_SECONDS
from mqttd.store.accounts import AccountsError
from mqttd.store.trace_rules import KINDS, TraceRule, add_rule, list_rules, remove_rule

NAME = "trace"
HELP = "trace every publish of chosen clients (client id, username or IP)"


def target(text):
    """``KIND=VALUE`` of a rule (argparse type)."""
    kind, sep, value = text.partition("=")
    if not sep or kind not in KINDS or not value:
        raise ArgumentTypeError(f"must be client_id=ID, username=NAME or ip=ADDRESS[/BITS], "
                                f"got {text!r}")
    return kind, value


def _json(rule):
    return attrs.asdict(rule)


def _add(context, args):
    kind, value = args.target
    at = context.now()
    until = None if args.until_removed else at + (args.seconds or DEFAULT_RULE_SECONDS)
    rule = add_rule(context.conn, TraceRule(kind, value, args.who or context.operator, at,
                                            until))
    lasting = "until removed" if until is None else f"until {when(until)}"
    return Output(_json(rule), (f"tracing {rule.kind}={rule.value} {lasting}",))


def _list(context, args):
    rules = list_rules(context.conn, None if args.all else context.now())
    return Output({"rules": [_json(rule) for rule in rules]},
                  table(("KIND", "VALUE", "UNTIL", "AT", "WHO"),
                        [(r.kind, r.value, when(r.until), when(r.at), r.who) for r in rules]))


def _remove(context, args):
    kind, value = args.target
    if not remove_rule(context.conn, kind, value):
        raise AccountsError(f"no trace rule {kind}={value}")
    return Output({"kind": kind, "value": value, "removed": True},
                  (f"no longer tracing {kind}={value}",))


def add_commands(actions, common):
    def named(parser):
        parser.add_argument("target", type=target, metavar="KIND=VALUE",
                            help="client_id=ID, username=NAME (a token user: its prefix) "
                                 "or ip=ADDRESS[/BITS]")

    add = actions.add_parser("add", parents=[common], help="trace these clients' publishes")
    named(add)
    lasting = add.add_mutually_exclusive_group()
    lasting.add_argument("--for", dest="seconds", type=seconds, metavar="SECONDS",
                         help=f"stop after this long (default {DEFAULT_RULE_SECONDS:g})")
    lasting.add_argument("--until-removed", action="store_true",
                         help="trace until mqttd trace rm")
    add.add_argument("--who", metavar="NAME", help="who asks (default: the operator's login)")
    add.set_defaults(run=_add)
    listing = actions.add_parser("list", parents=[common], help="the rules in force")
    listing.add_argument("--all", action="store_true", help="lapsed rules too")
    listing.set_defaults(run=_list)
    remove = actions.add_parser("rm", parents=[common], help="stop tracing these clients")
    named(remove)
    remove.set_defaults(run=_remove)
