"""What one connection may name, and as what the broker holds it: namespace, then ACL.

A client of an account lives inside the account's mount (``mqttd.namespace``): its
topics and filters are mounted on the way in, and deliveries drop the mount on the way
out (``Session``), so it sees its own topics. A ``$`` topic is outside its namespace
(``$SYS/x`` is not its to publish or read). A client without an account may not name
the mounts (``$a/``): that is another tenant's data. Past the namespace, the static ACL
rules (``mqttd.broker.acl``) judge the topic in the client's own view.

What is refused is counted (``mqtt_namespace_denied`` or ``mqtt_acl_denied``, by
action) and logged with client id, address, account, credentials (``who_of``: a
token by its prefix, never whole) and topic through the per-address log budget.

SIGHUP may bring new ACL rules (``Tenancy.reload``): every live connection's rules are
made again for its names, so its next PUBLISH and SUBSCRIBE meet the new ones (the
tenancy keeps a weak reference to each connection's ClientTopics: a connection that is
gone is not kept for it). Subscriptions granted before stay: the rules judge a filter
when it is subscribed to, as EMQX's authorization does.
The caller obeys: a publish (or a will) refused closes the MQTT 3.1.1 connection
without an ack (the protocol has no negative PUBACK), a subscription gets 0x80.
"""
import weakref

from twisted.logger import Logger

from mqttd.broker.connection_log import peer
from mqttd.namespace import mount_of, reserved
from mqttd.store.gate_records import who_of

__all__ = ["ClientTopics", "Tenancy", "NAMESPACE", "ACL"]

log = Logger(namespace="mqttd.broker.tenancy")

NAMESPACE = "namespace"
ACL = "acl"
_SHOWN = 200  # characters of a refused topic in the log (a topic may be 64 kB)


class ClientTopics:
    """One connection's topic rules: ``account`` (or None) and its ClientAcl (or None).

    ``publish`` and ``subscribe`` answer the topic as the broker holds it (mounted), or
    None if it is refused; ``refusal`` then says by what (NAMESPACE or ACL)."""

    __slots__ = ("account", "policed", "_mount", "_acl", "__weakref__")

    def __init__(self, account, acl):
        self.account = account
        self._mount = mount_of(account)
        self.rules(acl)

    def rules(self, acl):
        """Judge by ``acl`` (a ClientAcl or None) from now on."""
        self._acl = acl
        # False: a topic without a "$" is this client's as it is (no account, no rules).
        self.policed = self.account is not None or acl is not None

    def _outside(self, topic):
        if self._mount:
            return topic.startswith("$")
        return reserved(topic)

    def publish(self, topic):
        """Once per PUBLISH: the common client (no account, no rules) pays one test."""
        if topic.startswith("$") and self._outside(topic):
            return None
        acl = self._acl
        if acl is not None and not acl.may_publish(topic):
            return None
        mount = self._mount
        return mount + topic if mount else topic

    def subscribe(self, topic_filter):
        if self._outside(topic_filter):
            return None
        acl = self._acl
        if acl is not None and not acl.may_subscribe(topic_filter):
            return None
        return self._mount + topic_filter

    def unsubscribe(self, topic_filter):
        """The filter as subscribed (nothing to refuse: what was refused is not held)."""
        return self._mount + topic_filter

    def refusal(self, topic):
        """Why ``publish`` or ``subscribe`` refused ``topic`` (the error path only)."""
        return NAMESPACE if self._outside(topic) else ACL


class Tenancy:
    """The broker's rules for every connection: ``acl`` is an AclRules, or None;
    ``static_users`` the ``auth.users`` names, for the log lines (``who_of``)."""

    __slots__ = ("_acl", "_metrics", "_log_limit", "_static_users", "_live")

    def __init__(self, acl, metrics, log_limit, static_users=frozenset()):
        self._acl = acl
        self._metrics = metrics
        self._log_limit = log_limit
        self._static_users = static_users
        self._live = weakref.WeakKeyDictionary()  # ClientTopics -> (client id, username)

    def for_client(self, client_id, username, account):
        topics = ClientTopics(account, self._client_acl(client_id, username, account))
        self._live[topics] = (client_id, username)
        return topics

    def _client_acl(self, client_id, username, account):
        acl = self._acl
        return None if acl is None else acl.for_client(client_id, username, account)

    def reload(self, acl):
        """New rules (an AclRules, or None) for every connection, the live ones too;
        returns how many live ones were judged again."""
        self._acl = acl
        live = list(self._live.items())
        for topics, (client_id, username) in live:
            topics.rules(self._client_acl(client_id, username, topics.account))
        self._metrics.mqtt_acl_reloads += 1
        log.info("ACL reloaded: {rules} rules (auth.acl), {live} live connections judged "
                 "by them from now on", rules=0 if acl is None else len(acl), live=len(live))
        return len(live)

    def refused(self, topics, transport, client_id, username, action, topic):
        """Count and log that ``topics`` (a ClientTopics) of ``client_id`` (who sent
        ``username``) refused ``topic`` for ``action`` ("publish", "subscribe" or
        "will")."""
        reason = topics.refusal(topic)
        counter = (self._metrics.mqtt_namespace_denied if reason == NAMESPACE
                   else self._metrics.mqtt_acl_denied)
        counter[action] += 1
        address = transport.getPeer()
        if self._log_limit.allow(getattr(address, "host", None) or str(address)):
            shown = topic if len(topic) <= _SHOWN else topic[:_SHOWN] + "..."
            log.info("{action} denied by {reason}: {client_id} {peer} account={account} "
                     "({who}) topic={topic!r}", action=action, reason=reason,
                     client_id=client_id, peer=peer(transport), account=topics.account,
                     who=who_of(username, self._static_users), topic=shown)
        return reason
