"""``mqttd tokens add|list|revoke``: the secrets an account's devices connect with.

``tokens add`` prints the new token alone on its last line (``TOKEN=$(mqttd tokens add
acme | tail -n 1)``); it is never shown again, as the database keeps only its hash.
"""
from mqttd.manage.output import Output, table, when
from mqttd.store.gate_records import token_prefix
from mqttd.store.tokens import add_token, list_tokens, revoke_token

NAME = "tokens"
HELP = "device tokens: a device sends one as its MQTT username"


def _add(context, args):
    token = add_token(context.conn, args.account, now=context.now)
    prefix = token_prefix(token)
    return Output({"account": args.account, "prefix": prefix, "token": token},
                  (f"new token for account {args.account} (prefix {prefix}); it is shown "
                   f"only now, on the next line:", token))


def _list(context, args):
    tokens = list_tokens(context.conn, args.account)
    return Output({"tokens": [t.as_json() for t in tokens]},
                  table(("PREFIX", "ACCOUNT", "ACTIVE", "CREATED"),
                        [(t.prefix, t.account, t.active, when(t.created)) for t in tokens]))


def _revoke(context, args):
    info = revoke_token(context.conn, args.token)
    return Output(info.as_json(), (f"revoked token {info.prefix} of account {info.account}",))


def add_commands(actions, common):
    add = actions.add_parser("add", parents=[common], help="make a token for an account")
    add.add_argument("account", metavar="ACCOUNT")
    add.set_defaults(run=_add)
    listing = actions.add_parser("list", parents=[common],
                                 help="list tokens (prefixes, never the tokens)")
    listing.add_argument("--account", metavar="ACCOUNT", help="only this account's")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", parents=[common],
                                help="revoke a token: refused at its next CONNECT")
    revoke.add_argument("token", metavar="TOKEN_OR_PREFIX",
                        help="the token, or a prefix (as tokens list shows) naming one")
    revoke.set_defaults(run=_revoke)
