"""``mqttd bans add|list|rm``: client ids, usernames and IPs/CIDRs kept out.

The gate enforces bans at accept (IP) and at CONNECT (client id, username), and a
running appliance kicks the live connections a new ban matches. ``--for`` makes a ban
that lifts by itself; without it a ban holds until removed.

A username ban of a device token (any username not in ``auth.users``, the gate's rule)
is stored by the token's hash (``stored_ban_value``), never the token, and is listed by
that hash beside the token's prefix; ``bans rm`` takes the token or the hash.
"""
import attrs

from mqttd.manage.output import Output, seconds, table, when
from mqttd.store.accounts import AccountsError
from mqttd.store.bans import add_ban, list_bans, remove_ban, stored_ban_value, token_prefixes
from mqttd.store.gate_records import BAN_KINDS, BanRecord, token_prefix

NAME = "bans"
HELP = "bans of client ids, usernames and IP addresses or networks"


def _json(ban, prefix=None):
    """The ban as JSON; ``token_prefix``: the token's whose hash a username ban holds."""
    return dict(attrs.asdict(ban), token_prefix=prefix)


def _target(context, args):
    """(the value as stored, the token's prefix if it is a token given whole, else None)."""
    value = stored_ban_value(args.kind, args.value, context.static_users)
    given_token = args.kind == "username" and value != args.value
    return value, token_prefix(args.value) if given_token else None


def _shown(kind, value, prefix):
    return f"{kind} {value}" if prefix is None else f"{kind} {value} (token {prefix})"


def _add(context, args):
    at = context.now()
    until = None if args.seconds is None else at + args.seconds
    value, prefix = _target(context, args)
    ban = add_ban(context.conn, BanRecord(args.kind, value, args.who or context.operator,
                                          args.reason, at, until))
    prefix = prefix or token_prefixes(context.conn, [ban]).get(ban.value)
    lasting = "until removed" if until is None else f"until {when(until)}"
    return Output(_json(ban, prefix), (f"banned {_shown(ban.kind, ban.value, prefix)} {lasting}",))


def _list(context, args):
    bans = list_bans(context.conn, None if args.all else context.now())
    prefixes = token_prefixes(context.conn, bans)
    return Output({"bans": [_json(ban, prefixes.get(ban.value)) for ban in bans]},
                  table(("KIND", "VALUE", "TOKEN", "UNTIL", "AT", "WHO", "REASON"),
                        [(b.kind, b.value, prefixes.get(b.value, ""), when(b.until),
                          when(b.at), b.who, b.reason) for b in bans]))


def _remove(context, args):
    value, prefix = _target(context, args)
    if not remove_ban(context.conn, args.kind, args.value):
        token = "" if prefix is None else f" (token {prefix})"
        raise AccountsError(f"no {args.kind} ban of {value!r}{token}")
    return Output({"kind": args.kind, "value": value, "removed": True},
                  (f"removed the ban of {_shown(args.kind, value, prefix)}",))


def add_commands(actions, common):
    def target(parser):
        parser.add_argument("kind", choices=BAN_KINDS, metavar="KIND",
                            help=f"what is banned: {', '.join(BAN_KINDS)}")
        parser.add_argument("value", metavar="VALUE",
                            help="the client id, the username (a device's token is stored "
                                 "by its hash, which bans list shows), or an IP address or "
                                 "CIDR")

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
