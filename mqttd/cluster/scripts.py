"""The Lua the cluster runs in Redis, and the key layout it runs on.

A check and the change it allows must be one step for every node at once (the (N+1)-th
seat of an account refused even when two nodes ask in the same millisecond), so each
is a script: Redis runs one script at a time. Keys, under ``cluster.key_prefix``:

- ``node:NODE/BOOT`` a string with a TTL (``cluster.node_ttl``): the heartbeat of one
  run of one node. Its name is the field its seats are counted under.
- ``seats:ACCOUNT`` a hash, field NODE/BOOT -> distinct client ids of ACCOUNT that
  node holds. ``SEAT`` sums the fields whose heartbeat lives, drops the others (a node
  that died gives its seats back once its heartbeat expired), and takes a seat only
  under ``max_connections``.
- ``flap:KIND:VALUE`` a sorted set of disconnect times within the window, at most
  ``max_count`` of them, expiring with the window: ``FLAP`` counts one and says when
  the key flapped (its set then starts again from nothing, as in memory).
- ``bans`` a hash, field json([kind, value]) -> the ban as JSON; ``unbans`` a sorted
  set of removed fields by when (kept ``cluster.removed_ban_ttl``); ``banexp`` the
  timed bans by their end (dropped once lapsed, at the next add); ``banlog`` a stream
  of every change (at most about ``cluster.max_ban_log``) numbered by ``banseq``, which
  the nodes read from where they were (``mqttd.cluster.bans``).

The scripts touch keys they derive (heartbeats by field name): one Redis, or a primary
with replicas; not Redis Cluster's sharding.
"""
import hashlib

import attrs

__all__ = ["BAN_ADD", "BAN_REMOVE", "BAN_SNAPSHOT", "FLAP", "RESEAT", "SEAT", "Script",
           "UNSEAT"]


@attrs.frozen
class Script:
    """A named Lua script (its SHA-1, for EVALSHA)."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self):
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


# KEYS[1] seats:ACCOUNT; ARGV: this node's field, max_connections, heartbeat prefix.
# 1: seated; 0: the account holds max_connections seats already.
SEAT = Script("seat", """
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local node = fields[i]
  if node == ARGV[1] or redis.call('EXISTS', ARGV[3] .. node) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], node)
  end
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
""")

# KEYS[1] seats:ACCOUNT; ARGV: this node's field. A seat given back (never below 0).
UNSEAT = Script("unseat", """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return left
""")

# KEYS: seats:ACCOUNT ...; ARGV: this node's field, then each account's count (0
# removes the field). This node's seats as it holds them, after a reconnect.
RESEAT = Script("reseat", """
for i = 1, #KEYS do
  local count = tonumber(ARGV[i + 1])
  if count > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], count)
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return #KEYS
""")

# KEYS[1] flap:KIND:VALUE; ARGV: now, window_time, max_count, a unique member.
# 1: the max_count-th disconnect within the window (the set is emptied); else 0.
FLAP = Script("flap", """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.17g', now - window))
redis.call('ZADD', KEYS[1], now, ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= most then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -most - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 0
""")

_LOG = """
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'op', OP,
           'field', ARGV[1], 'ban', BAN, 'origin', ARGV[3])
"""

# KEYS: bans, unbans, banlog, banseq, banexp; ARGV: field, ban JSON, origin, log
# length, at, until ("" for none), now. 1: stored and logged; 2: already so; 0:
# removed after it was made (stale: the node that asked removes its copy). Up to 100
# bans that lapsed leave the hash on the way (each node lets them lapse by itself).
BAN_ADD = Script("ban_add", """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[7], 'LIMIT', 0, 100)
for i = 1, #lapsed do
  redis.call('HDEL', KEYS[1], lapsed[i])
  redis.call('ZREM', KEYS[5], lapsed[i])
end
local removed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if removed and tonumber(removed) >= tonumber(ARGV[5]) then
  return 0
end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return 2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
end
""" + _LOG.replace("OP", "'add'").replace("BAN", "ARGV[2]") + """
return 1
""")

# KEYS: bans, unbans, banlog, banseq, banexp; ARGV: field, now, origin, log length,
# how long removals are remembered. 1: removed and logged; 0: there was none
# (remembered still).
BAN_REMOVE = Script("ban_remove", """
local now = tonumber(ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.17g', now - tonumber(ARGV[5])))
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
""" + _LOG.replace("OP", "'rm'").replace("BAN", "''") + """
return 1
""")

# KEYS: bans, banlog, banseq. {seq, last log id, HGETALL bans}, in one step: the whole
# list, and where the log stood when it was read.
BAN_SNAPSHOT = Script("ban_snapshot", """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then
  id = last[1][1]
end
return {tonumber(redis.call('GET', KEYS[3]) or '0'), id, redis.call('HGETALL', KEYS[1])}
""")
