"""The appliance's data directory: made once, for mqttd's user alone.

Shared by the single process, the tree's master and ingest child, and the operator CLI
(which works on a stopped appliance too), so it lives beside the database code."""
import os

from mqttd.errors import ConfigError

__all__ = ["make_data_dir"]


def make_data_dir(config):
    """Create ``server.data_dir`` if missing, for this user alone; ConfigError if not."""
    data_dir = config.server.data_dir
    try:
        # Only this user may enter it (an existing directory keeps its mode): it holds
        # the database, every message.
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"server.data_dir: cannot create {data_dir!r}: {e.strerror}") from None
    return data_dir
