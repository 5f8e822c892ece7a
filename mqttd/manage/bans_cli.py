"""``mqttd bans add|list|rm``: client ids, usernames and IPs/CIDRs kept out.

The gate enforces bans at accept (IP) and at CONNECT (client id, username), and a
running appliance kicks the live connections a new ban matches. ``--for`` makes a ban
that lifts by itself; without it a ban holds until removed.
"""
import attrs

from mqttd.manage.output import Output, seconds, table, when
from mqttd.store.accounts import AccountsError
from mqttd.store.bans import add_ban, list_bans, remove_ban
from mqttd.store.gate_records import BAN_KINDS, BanRecord

NAME = "bans"
HELP = "bans of client ids, usernames and IP addresses or networks"


def _json(ban):
    return attrs.asdict(ban)


def _add(context, args):
    at = context.now()
    until = None if args.seconds is None else at + args.seconds
    ban = add_ban(context.conn, BanRecord(args.kind, args.value, args.who or context.operator,
                                          args.reason, at, until))
    lasting = "until removed" if until is None else f"until {when(until)}"
    return Output(_json(ban), (f"banned {ban.kind} {ban.value} {lasting}",))


def _list(context, args):
    bans = list_bans(context.conn, None if args.all else context.now())
    return Output({"bans": [_json(ban) for ban in bans]},
                  table(("KIND", "VALUE", "UNTIL", "AT", "WHO", "REASON"),
                        [(b.kind, b.value, when(b.until), when(b.at), b.who, b.reason)
                         for b in bans]))


def _remove(context, args):
    if not remove_ban(context.conn, args.kind, args.value):
        raise AccountsError(f"no {args.kind} ban of {args.value!r}")
    return Output({"kind": args.kind, "value": args.value, "removed": True},
                  (f"removed the ban of {args.kind} {args.value}",))


def add_commands(actions, common):
    def target(parser):
        parser.add_argument("kind", choices=BAN_KINDS, metavar="KIND",
                            help=f"what is banned: {', '.join(BAN_KINDS)}")
        parser.add_argument("value", metavar="VALUE",
                            help="the client id, the username, or an IP address or CIDR")

    add = actions.add_parser("add", parents=[common], help="ban (or ban again, replacing)")
    target(add)
    add.add_argument("--for", dest="seconds", type=seconds, metavar="SECONDS",
                     help="lift the ban after this long (default: until removed)")
    add.add_argument("--reason", default="", metavar="TEXT", help="why, for the record")
    add.add_argument("--who", metavar="NAME", help="who bans (default: the operator's login)")
    add.set_defaults(run=_add)
    listing = actions.add_parser("list", parents=[common], help="bans in force now")
    listing.add_argument("--all", action="store_true", help="lapsed bans too")
    listing.set_defaults(run=_list)
    remove = actions.add_parser("rm", parents=[common], help="remove a ban")
    target(remove)
    remove.set_defaults(run=_remove)
