"""``mqttd accounts add|list|show|set|disable|enable``: the customers the gate admits.

A disabled account's tokens are refused at their next CONNECT, and a running appliance
kicks its live connections when it sees the change (it polls ``gate_version``).
"""
from mqttd.manage.output import Output, count, count_or_none, table, when
from mqttd.store.accounts import (KEEP, NAME_RULE, add_account, disable_account,
                                  enable_account, get_account, list_accounts, set_account)
from mqttd.store.tokens import list_tokens

NAME = "accounts"
HELP = "customer accounts: each device token belongs to one"


def _described(account):
    quota = "no quota" if account.max_connections is None else (
        f"max_connections {account.max_connections}")
    return (f"account {account.name}: {'active' if account.active else 'INACTIVE'}, {quota}, "
            f"devices {'-' if account.devices is None else account.devices}, "
            f"licence {account.licence or '-'}")


def _add(context, args):
    account = add_account(context.conn, args.name, max_connections=args.max_connections,
                          devices=args.devices, licence=args.licence,
                          active=not args.inactive, now=context.now)
    return Output(account.as_json(), (f"added {_described(account)}",))


def _list(context, args):
    accounts = list_accounts(context.conn)
    rows = [(a.name, a.active, a.max_connections, a.devices, a.licence, when(a.updated))
            for a in accounts]
    return Output({"accounts": [a.as_json() for a in accounts]},
                  table(("NAME", "ACTIVE", "MAX_CONNECTIONS", "DEVICES", "LICENCE", "UPDATED"),
                        rows))


def _show(context, args):
    account = get_account(context.conn, args.name)
    tokens = list_tokens(context.conn, args.name)
    lines = [_described(account),
             f"created {when(account.created)}, updated {when(account.updated)}",
             f"tokens: {len(tokens)} ({sum(t.active for t in tokens)} active)"]
    if tokens:
        lines += table(("PREFIX", "ACTIVE", "CREATED"),
                       [(t.prefix, t.active, when(t.created)) for t in tokens])
    return Output(dict(account.as_json(), tokens=[t.as_json() for t in tokens]), tuple(lines))


def _set(context, args):
    account = set_account(context.conn, args.name, max_connections=args.max_connections,
                          devices=args.devices, licence=args.licence, now=context.now)
    return Output(account.as_json(), (f"set {_described(account)}",))


def _switch(change, word):
    def switched(context, args):
        account = change(context.conn, args.name, now=context.now)
        return Output(account.as_json(), (f"account {account.name} {word}",))
    return switched


def add_commands(actions, common):
    def command(name, run, help):
        parser = actions.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(run=run)
        return parser

    def name_argument(parser):
        parser.add_argument("name", metavar="NAME", help=f"account name: {NAME_RULE}")

    add = command("add", _add, "add an account (active unless --inactive)")
    name_argument(add)
    add.add_argument("--max-connections", type=count, metavar="N",
                     help="connections the account may hold at once (default: no quota)")
    add.add_argument("--devices", type=count, metavar="N", help="devices it is licensed for")
    add.add_argument("--licence", metavar="TEXT", help="the licence it holds")
    add.add_argument("--inactive", action="store_true", help="add it disabled")
    command("list", _list, "list every account")
    name_argument(command("show", _show, "one account and its tokens (prefixes only)"))
    change = command("set", _set, "change an account's quota, devices or licence (a lower "
                     "quota kicks no one: the next CONNECT over it is refused)")
    name_argument(change)
    change.add_argument("--max-connections", type=count_or_none, metavar="N|none", default=KEEP,
                        help="the quota; none removes it. Lowered below what is connected, "
                             "it kicks no one: the connections stay, and a new client id "
                             "is refused (0x05 quota) until fewer than N are connected")
    change.add_argument("--devices", type=count, metavar="N", default=KEEP)
    change.add_argument("--licence", metavar="TEXT", default=KEEP)
    name_argument(command("disable", _switch(disable_account, "disabled: its tokens are "
                                             "refused, its connections kicked"),
                          "refuse the account's devices and kick its connections"))
    name_argument(command("enable", _switch(enable_account, "enabled"),
                          "admit the account's devices again"))
