"""Per-device data gaps: a device silent for ``manage.gap_factor`` times its own median
interval is listed, with when it went quiet.

The incident's operators learned of lost data from their users. A device that publishes
every minute and has been silent for ten is news however the broker feels, so each
broker process learns every device's rhythm from what it publishes (``observing``
wraps the broker's ``submit``: every PUBLISH and will passes there, keyed by account and
client id) and lists those that broke it. The rules:

- publishes less than ``BURST`` (1 s) after the last sample are one burst: a QoS 1
  window of ten messages is one sample, not nine intervals of 0 s;
- the median of the last ``RING`` (9) intervals is the device's usual interval (a
  median: one long outage does not become the norm); it is judged once it has
  ``MIN_SAMPLES`` (5) of them;
- silent past ``factor x median`` (and at least ``BURST``): listed from then on, logged
  in one line per check for all that went quiet together, until it publishes again
  (then logged as back, one line per check too); a device silent for ``FORGET_AFTER``
  (7 days) is forgotten (the first listed first).

Memory is bounded: at most ``max_devices`` devices (about 600 bytes each: the key, a
slotted record, nine float32 intervals), the one silent longest forgotten first
(``manage_gap_devices_dropped``). Time is bounded too: a publish costs a dict lookup and
a comparison (a median is sorted at most once a second per device), and the check pops
only the devices due in a heap of one entry per device, instead of scanning them all.
"""
import heapq
import itertools
from array import array
from collections import OrderedDict

from twisted.logger import Logger

from mqttd.namespace import mount_length, session_key, unmount

__all__ = ["BURST", "FORGET_AFTER", "GapWatch", "MIN_SAMPLES", "RING", "merge_gaps"]

log = Logger()

BURST = 1.0
RING = 9
MIN_SAMPLES = 5
FORGET_AFTER = 7 * 86_400.0
LISTED = 100
"""Devices of one process given in ``gaps()`` (most recently quiet first; each id cut to
200 characters, so a worker's list stays a few tens of kB in its snapshot); the metric
``manage_gap_devices`` counts them all."""
_SHOWN = 5  # devices named in one log line
_SHOWN_ID = 200  # characters of a client id in a listing or a line (an id may be 64 kB)


class _Device:
    __slots__ = ("last", "mark", "intervals", "count", "limit", "due", "quiet")

    def __init__(self, now):
        self.last = now  # its last publish
        self.mark = now  # its last sample (the start of its last burst)
        self.intervals = None  # array of up to RING float32 intervals, once it has one
        self.count = 0  # intervals recorded, ever
        self.limit = None  # factor x median, once judged
        self.due = False  # it has an entry in the heap
        self.quiet = False  # listed as silent


class GapWatch:
    """``seen(key, now)`` for each publish (through ``observing``), ``check()`` every
    second or so, ``gaps()`` the devices silent now. ``exempt``: client ids never
    judged (the canary's)."""

    def __init__(self, clock, factor, max_devices, metrics, process="mqttd", exempt=()):
        self._clock = clock
        self._factor = factor
        self._max = max_devices
        self._metrics = metrics
        self._process = process
        self._exempt = frozenset(exempt)
        self._devices = OrderedDict()  # key -> _Device, the least recently sampled first
        self._heap = []  # (deadline, n, key, _Device): when to look at a device again
        self._order = itertools.count()
        self._quiet = OrderedDict()  # key -> _Device, listed, the first listed first
        self._back_count = 0  # devices off the list since the last check
        self._back_shown = []  # the first _SHOWN of them, for its log line

    def observing(self, submit):
        """``submit`` (the broker's ``submit(message, notify, token)``) that tells this
        watch of each message first."""
        seen = self.seen
        exempt = self._exempt

        def observed(message, notify, token):
            client_id = message.client_id
            if client_id not in exempt:
                topic = message.topic
                key = (client_id if topic[0] != "$" else
                       session_key(unmount(topic)[0], client_id))
                seen(key, message.received_at)
            submit(message, notify, token)
        return observed

    def seen(self, key, now):
        device = self._devices.get(key)
        if device is None:
            self._add(key, now)
            return
        if device.quiet:
            self._back(key, device, now)
        device.last = now
        if now - device.mark >= BURST:
            self._sample(key, device, now)

    def _add(self, key, now):
        devices = self._devices
        while len(devices) >= self._max:
            old_key, old = devices.popitem(last=False)
            self._quiet.pop(old_key, None)
            self._metrics.manage_gap_devices_dropped += 1
        devices[key] = _Device(now)
        self._gauge()

    def _sample(self, key, device, now):
        interval = now - device.mark
        device.mark = now
        self._devices.move_to_end(key)
        if device.intervals is None:
            device.intervals = array("f", [interval])
        elif len(device.intervals) < RING:
            device.intervals.append(interval)
        else:
            device.intervals[device.count % RING] = interval
        device.count += 1
        if len(device.intervals) >= MIN_SAMPLES:
            ordered = sorted(device.intervals)
            device.limit = max(BURST, self._factor * ordered[len(ordered) // 2])
            if not device.due:
                self._push(key, device, device.last + device.limit)

    def _push(self, key, device, deadline):
        device.due = True
        heap = self._heap
        if len(heap) > 2 * len(self._devices) + 64:
            # Entries of forgotten devices wait for their deadline: rebuild without them.
            heap[:] = [entry for entry in heap if self._devices.get(entry[2]) is entry[3]]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._order), key, device))

    def _back(self, key, device, now):
        device.quiet = False
        del self._quiet[key]
        self._gauge()
        self._back_count += 1
        if len(self._back_shown) < _SHOWN:
            self._back_shown.append(f"{_name(key)} (after {now - device.last:.0f} s)")

    def check(self):
        """List the devices that went silent since the last check (logged in one line),
        forget those silent past ``FORGET_AFTER``."""
        now = self._clock.seconds()
        heap = self._heap
        quiet = []
        while heap and heap[0][0] <= now:
            _, _, key, device = heapq.heappop(heap)
            device.due = False
            if self._devices.get(key) is not device:
                continue  # forgotten meanwhile
            deadline = device.last + device.limit
            if deadline > now:
                self._push(key, device, deadline)
                continue
            device.quiet = True  # no entry until it publishes again
            self._quiet[key] = device
            quiet.append(key)
        listed = self._quiet
        while listed and now - next(iter(listed.values())).last >= FORGET_AFTER:
            del self._devices[listed.popitem(last=False)[0]]
        if self._back_count:
            more = self._back_count - len(self._back_shown)
            log.info("gap: {n} device(s) publish again: {shown}{more}", n=self._back_count,
                     shown=", ".join(self._back_shown), more=f" and {more} more" if more else "")
            self._back_count, self._back_shown = 0, []
        if quiet:
            shown = ", ".join(self._describe(key, now) for key in quiet[:_SHOWN])
            more = f" and {len(quiet) - _SHOWN} more" if len(quiet) > _SHOWN else ""
            log.warn("gap: {n} device(s) went silent past manage.gap_factor ({factor:g}) "
                     "times their usual interval: {shown}{more}", n=len(quiet),
                     factor=self._factor, shown=shown, more=more)
        self._gauge()

    def _describe(self, key, now):
        device = self._devices[key]
        return (f"{_name(key)} (silent {now - device.last:.0f} s, usually every "
                f"{_median(device):.1f} s)")

    def _gauge(self):
        metrics = self._metrics
        metrics.manage_gap_devices = len(self._quiet)
        metrics.manage_gap_devices_tracked = len(self._devices)

    def gaps(self, limit=LISTED):
        """The devices silent now, most recently quiet first: dicts of client_id,
        account, last_seen (epoch seconds: when it went quiet), silent_for, usual
        interval (its median, seconds), process."""
        now = self._clock.seconds()
        listed = sorted(self._quiet.items(), key=lambda item: item[1].last, reverse=True)
        return [_entry(key, device, now, self._process) for key, device in listed[:limit]]


def _median(device):
    ordered = sorted(device.intervals)
    return float(ordered[len(ordered) // 2])


def _split(key):
    cut = mount_length(key)
    return (key[3:cut - 1] if cut else None), key[cut:]


def _name(key):
    account, client_id = _split(key)
    client_id = _cut(client_id)
    return client_id if account is None else f"{client_id} (account {account})"


def _cut(client_id):
    return client_id if len(client_id) <= _SHOWN_ID else client_id[:_SHOWN_ID] + "..."


def _entry(key, device, now, process):
    account, client_id = _split(key)
    return {"client_id": _cut(client_id), "account": account, "last_seen": device.last,
            "silent_for": round(now - device.last, 3),
            "usual_interval": round(_median(device), 3), "process": process}


def merge_gaps(lists, limit=LISTED):
    """One list of every process's ``gaps()`` (each from its own snapshot), the most
    recently quiet first, at most ``limit``."""
    merged = [entry for entries in lists for entry in entries if isinstance(entry, dict)]
    merged.sort(key=lambda entry: entry.get("last_seen") or 0, reverse=True)
    return merged[:limit]
