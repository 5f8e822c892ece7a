"""The gate's shared state in Redis, for several appliances side by side (``[cluster]``).

Same interfaces as the in-memory state of ``mqttd.edge`` (tickets and quotas,
flapping windows, bans), built by ``mqttd.cluster.state`` when ``cluster.redis_url`` is
set: ``link`` (the connection), ``node`` (heartbeat), ``seats`` (quotas), ``flapping``,
``bans``, and ``scripts`` (the Lua and the key layout). Redis down: each decision falls
back to this node's own state, loudly (``cluster_redis_up``).
"""
