"""The scenarios compare.py runs and the targets (brokers) each one runs against."""
from brokers import BASELINE, CEILING, NODELAY, NOHTTP, tree_name

SCENARIOS = {
    "qos1-w10": {"kind": "load", "qos": 1, "connections": 10, "window": 10,
                 "desc": "QoS 1, 10 connections, window 10"},
    "qos1-w100": {"kind": "load", "qos": 1, "connections": 10, "window": 100,
                  "desc": "QoS 1, 10 connections, window 100"},
    "qos1-w10-c1k": {"kind": "load", "qos": 1, "connections": 1000, "window": 10,
                     "desc": "QoS 1, 1,000 connections, window 10"},
    "qos1-w100-c1k": {"kind": "load", "qos": 1, "connections": 1000, "window": 100,
                      "desc": "QoS 1, 1,000 connections, window 100"},
    "qos0": {"kind": "load", "qos": 0, "connections": 10, "window": 1,
             "desc": "QoS 0, 10 connections"},
    "idle": {"kind": "idle", "desc": "idle connections, RSS per connection (fresh broker each)"},
}
SWEEP_SCENARIO = "qos1-w10"  # default --sweep-scenario: where the flush_interval variants run


def fi_name(ms):
    return "mqttd-fi%s" % ("%g" % ms).replace(".", "p")


def targets_for(scenario, args):
    """Target names run in ``scenario`` (the sweep variants only in the sweep scenarios)."""
    names = ["mosquitto", "mqttd"]
    if scenario in args.sweep_scenario:
        names += [fi_name(ms) for ms in args.flush_intervals]
    # the process tree runs everywhere mqttd does, idle too (RSS over all its processes)
    names += [tree_name(n) for n in getattr(args, "with_workers", None) or ()]
    if SCENARIOS[scenario]["kind"] == "load":
        names += [n for n, on in ((CEILING, args.with_ceiling), (NOHTTP, args.with_nohttp),
                                  (NODELAY, args.with_mosquitto_nodelay),
                                  (BASELINE, getattr(args, "with_baseline", None))) if on]
    return names
