"""The rules of the ``[cluster]`` section beyond types and bounds (``mqttd.cluster``).

Each raises a ConfigError naming the key to change; a bad ``redis_url`` never echoes
its password.
"""
from mqttd.errors import ConfigError
from mqttd.urls import redis_address

__all__ = ["check_cluster"]

_NAME_CHARS = frozenset(map(chr, range(0x21, 0x7F)))  # visible ASCII, no space


def check_cluster(cluster):
    if cluster.redis_url:
        try:
            redis_address(cluster.redis_url)
        except ValueError as e:
            raise ConfigError(f"cluster.redis_url: {e}") from None
    if not cluster.node_name or not set(cluster.node_name) <= _NAME_CHARS \
            or len(cluster.node_name) > 128:
        raise ConfigError(f"cluster.node_name: must be 1..128 visible ASCII characters "
                          f"(no spaces), got {cluster.node_name!r}")
    if not cluster.key_prefix or not set(cluster.key_prefix) <= _NAME_CHARS \
            or len(cluster.key_prefix) > 64:
        raise ConfigError(f"cluster.key_prefix: must be 1..64 visible ASCII characters "
                          f"(no spaces), got {cluster.key_prefix!r}")
    if cluster.reconnect_initial > cluster.reconnect_max:
        raise ConfigError(f"cluster.reconnect_initial: must be at most cluster.reconnect_max "
                          f"({cluster.reconnect_max:g}), got {cluster.reconnect_initial:g}")
    if cluster.node_ttl < 3 * cluster.timeout:
        # A heartbeat renewed every third of the TTL must get its answer in time, or a
        # live node would lose its quota seats to the others.
        raise ConfigError(f"cluster.node_ttl: must be at least 3 x cluster.timeout "
                          f"({3 * cluster.timeout:g}), got {cluster.node_ttl:g}")
