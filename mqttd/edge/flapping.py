"""Flapping detection (EMQX's ``flapping_detect``): a client that keeps reconnecting.

A device in a crash loop, or two devices sharing one client id and taking each other
over, disconnects again and again; each round costs a hand-off, a session and log lines.
The detector counts disconnects per client id (and, when asked, per username and per
IP address) in a sliding window: the ``max_count``-th disconnect of one key within
``window_time`` seconds bans that key for ``ban_time`` seconds (a ``BanRecord`` by
"flapping", handed to ``on_ban``); the key's count starts again from nothing. With
``dry_run`` it logs "would ban" and bans nothing.

A token user's username key is the token's hash (``token_hash``), so a ban never
writes a token into the bans table; the log line names the client by ``who`` (the
gate's ``who_of``: "token PREFIX", "user NAME" or "anonymous"), never by its token.

Memory is bounded in bytes: a key holds at most ``max_count`` timestamps, and at most
``MAX_TRACKED_BYTES / (KEY_COST + 32 * max_count)`` keys are tracked (about 46,000 at
the default 15), the least recently seen first out; a key whose newest disconnect is
older than the window is as good as new and goes first.

SIGHUP may bring a new ``[flapping_detect]`` (``reconfigure``): it applies from the next
disconnect on. The keys of a kind no longer counted are forgotten (all of them when
disabled); a new ``max_count`` keeps each key's newest disconnects (up to it). Bans already made stay until they lift (``mqttd
bans rm`` lifts one early).
"""
from collections import OrderedDict, deque

from twisted.logger import Logger

from mqttd.store.gate_records import BanRecord

__all__ = ["FlappingDetector", "MAX_TRACKED_BYTES", "UNNAMED"]

log = Logger()

MAX_TRACKED_BYTES = 32 * 1024 * 1024
UNNAMED = "credentials not given"
"""``who`` when the caller did not name the client's credentials."""
KEY_COST = 250
"""What a tracked key costs besides its timestamps: its (kind, value) tuple, the value
(a client id, a username hash, an address), its dict slot and its deque."""


class FlappingDetector:
    """``disconnected(client_id, username_key, host, who)`` after every connection's end;
    ``on_ban(record)`` makes a ban. ``config`` is ``[flapping_detect]`` (duck-typed)."""

    def __init__(self, clock, config, on_ban, metrics, log_rate,
                 max_tracked_bytes=MAX_TRACKED_BYTES):
        self._clock = clock
        self._on_ban = on_ban
        self._metrics = metrics
        self._log_rate = log_rate
        self._max_tracked_bytes = max_tracked_bytes
        self._windows = OrderedDict()  # (kind, value) -> deque of times, least recent first
        self.reconfigure(config)

    def reconfigure(self, config):
        """Count by ``config`` (``[flapping_detect]``) from the next disconnect on."""
        windows = self._windows
        counted = {"clientid": config.enable, "username": config.enable and config.by_username,
                   "ip": config.enable and config.by_ip}
        for key in list(windows):  # (a key's deque holds max_count times at most)
            if not counted[key[0]]:
                del windows[key]
            elif windows[key].maxlen != config.max_count:
                windows[key] = deque(windows[key], maxlen=config.max_count)
        self._config = config
        self._max_keys = max(1, self._max_tracked_bytes // (KEY_COST + 32 * config.max_count))
        while len(windows) > self._max_keys:
            windows.popitem(last=False)

    def __len__(self):
        """Keys tracked now."""
        return len(self._windows)

    def busiest(self, limit):
        """The ``limit`` keys with the most disconnects within the window now, most
        first: [(kind, value, disconnects, newest)] (the report's flapping clients)."""
        now = self._clock.seconds()
        window_time = self._config.window_time
        counts = []
        for (kind, value), times in self._windows.items():
            recent = sum(1 for at in times if now - at <= window_time)
            if recent:
                counts.append((kind, value, recent, times[-1]))
        counts.sort(key=lambda entry: (-entry[2], -entry[3]))
        return counts[:limit]

    def disconnected(self, client_id, username_key=None, host=None, who=UNNAMED):
        """One connection ended: count it for its client id, and for its username
        (``username_key``: a token user's token hash) and peer address when enabled.
        ``who`` names its credentials in a log line (never a token)."""
        now = self._clock.seconds()
        for key in self.keys(client_id, username_key, host):
            self.count(key, now, client_id, host, who)

    def keys(self, client_id, username_key=None, host=None):
        """The (kind, value) keys one disconnect counts for (none while disabled): the
        cluster's detector counts the same keys in Redis."""
        config = self._config
        if not config.enable:
            return []
        keys = [("clientid", client_id)]
        if config.by_username and username_key is not None:
            keys.append(("username", username_key))
        if config.by_ip and host:
            keys.append(("ip", host))
        return keys

    def count(self, key, now, client_id, host, who=UNNAMED):
        """Count one disconnect of ``key`` at ``now`` here; ``flapped`` at the threshold."""
        config = self._config
        windows = self._windows
        times = windows.get(key)
        if times is None:
            self._sweep(now)
            times = windows[key] = deque(maxlen=config.max_count)
        else:
            windows.move_to_end(key)
        times.append(now)
        if len(times) < config.max_count or now - times[0] > config.window_time:
            return
        del windows[key]
        self.flapped(key, now, client_id, host, who)

    def flapped(self, key, now, client_id, host, who=UNNAMED):
        """``key`` reached ``max_count`` disconnects within the window: ban it (or, with
        ``dry_run``, say it would), counted and logged."""
        config = self._config
        kind, value = key
        reason = (f"{config.max_count} disconnects within {config.window_time:g} s "
                  "(flapping_detect)")
        if config.dry_run:
            self._metrics.edge_flapping_would_ban[kind] += 1
            if self._log_rate.allow(host or client_id):
                log.info("flapping: would ban {kind} {value} for {ban_time} s: {reason} "
                         "(client {client_id} from {peer}, {who}; dry_run)", kind=kind,
                         value=value, ban_time=config.ban_time, reason=reason,
                         client_id=client_id, peer=host, who=who)
            return
        self._metrics.edge_flapping_bans[kind] += 1
        if self._log_rate.allow(host or client_id):
            log.info("flapping: banned {kind} {value} for {ban_time} s: {reason} "
                     "(client {client_id} from {peer}, {who})", kind=kind, value=value,
                     ban_time=config.ban_time, reason=reason, client_id=client_id,
                     peer=host, who=who)
        self._on_ban(BanRecord(kind, value, "flapping", reason, now, now + config.ban_time))

    def _sweep(self, now):
        """Room for one key more: drop the stale, then past the cap the least recent."""
        windows = self._windows
        window_time = self._config.window_time
        while windows:
            key, times = next(iter(windows.items()))
            if len(windows) < self._max_keys and now - times[-1] <= window_time:
                return
            del windows[key]
