"""The brokers compare.py runs side by side: generated configs, start, wait, stop.

mosquitto and every mqttd variant (the durable appliance and its benchmark stand-ins)
get a directory of their own under one temp dir, an ephemeral loopback port, and a
session of their own so that stop() kills the whole process group.
"""
import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import tomllib

import proctree

HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _raise_nofile():
    """preexec_fn for the brokers: soft RLIMIT_NOFILE up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass



def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


# -- TOML for the generated mqttd config --------------------------------------------------

def merge(base, extra):
    """Deep-merge dict ``extra`` into a copy of ``base`` (tables merge, values replace)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError("cannot write %r as TOML" % (v,))


def dump_toml(doc):
    """Enough TOML for mqttd's config: [section] tables of scalars/arrays, [[arrays]] of tables."""
    lines = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise TypeError("top-level key %r must be a table" % section)
        lines.append("[%s]" % section)
        nested = []
        for k, v in table.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                nested.append((k, v))
            else:
                lines.append("%s = %s" % (k, _toml_value(v)))
        for k, items in nested:
            for item in items:
                lines.append("[[%s.%s]]" % (section, k))
                lines.extend("%s = %s" % (kk, _toml_value(vv)) for kk, vv in item.items())
        lines.append("")
    return "\n".join(lines)


def parse_set(item):
    """--mqttd-set section.key=VALUE (VALUE in TOML syntax; bare words are strings)."""
    path, sep, raw = item.partition("=")
    if not sep or "." not in path:
        raise argparse.ArgumentTypeError("expected section.key=VALUE, got %r" % item)
    try:
        value = tomllib.loads("v = " + raw)["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    section, key = path.strip().split(".", 1)
    return {section: {key: value}}


# -- brokers ----------------------------------------------------------------------------

class Broker:
    def __init__(self, name, kind, argv, port, log, cwd, db=None, overrides=None, env=None,
                 workers=None):
        self.env = env  # None: compare.py's own environment
        self.workers = workers  # mqttd's server.workers as configured (None: mosquitto)
        self.name = name  # target name: "mosquitto", "mqttd", "mqttd-fi0", ...
        self.kind = kind  # "mosquitto" or "mqttd"
        self.argv = argv
        self.port = port
        self.log = log
        self.cwd = cwd
        self.db = db  # mqttd.db path (mqttd only)
        self.overrides = overrides or {}
        self.proc = None
        self.dead = None  # why it is unusable, once it is

    def mode(self):
        """How it runs, for the run's header: one process or a tree of N workers."""
        if self.workers is None:
            return self.kind
        if self.workers == 0:
            return "%s, server.workers = 0: one process" % self.kind
        return "%s, server.workers = %d: master, %d workers, ingest" % (
            self.kind, self.workers, self.workers)

    def start(self):
        out = open(os.path.join(self.cwd, "broker.stdout"), "wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile, start_new_session=True,
            env=self.env)
        out.close()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("%s exited with %s before listening" % (self.name, self.proc.returncode))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("%s did not listen on port %d within %.0f s" % (self.name, self.port, timeout))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)  # our own session: the broker and its children
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    metrics_dir = None  # set for an mqttd started with metrics_site/ (metrics_mqttd.py)

    def read_metrics(self, timeout=5.0):
        """{process name: {series: value}} of every process of the broker (SIGUSR1 to
        each, metrics_mqttd.py), or None when it was not started that way."""
        if self.metrics_dir is None or not self.alive():
            return None
        procs = proctree.snapshot(self.proc.pid)
        names = [p.name for p in procs]
        paths = {}
        for p in procs:  # a name two processes share gets their pids
            key = p.name if names.count(p.name) == 1 else "%s#%d" % (p.name, p.pid)
            paths[key] = path = os.path.join(self.metrics_dir, "%d.json" % p.pid)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            try:
                os.kill(p.pid, signal.SIGUSR1)
            except ProcessLookupError:
                del paths[key]
        out = {}
        deadline = time.monotonic() + timeout
        while paths and time.monotonic() < deadline:
            for name, path in list(paths.items()):
                try:
                    with open(path) as f:
                        out[name] = json.load(f)
                    del paths[name]
                except FileNotFoundError:
                    pass
            time.sleep(0.02)
        return out

    def output_tail(self):
        return tail(self.log) + tail(os.path.join(self.cwd, "broker.stdout"), 10)


NODELAY = "mosquitto-nodelay"
"""--with-mosquitto-nodelay's target: the mosquitto config of sessions 1-5, for the A/B."""

SESSION5_MOSQUITTO = (
    # what compare.py ran until session 5; set_tcp_nodelay (not a default) cut mosquitto's
    # QoS 1 rate by up to half with this load generator. The rest changes nothing here.
    "set_tcp_nodelay true",
    "max_connections -1",
    "max_inflight_messages 0",
    "max_queued_messages 0",
    "connection_messages false",
    "log_type error",
    "log_type warning",
    "log_type notice",
)


def make_mosquitto(tmp, args, name="mosquitto", tag="", overrides=None):
    """mosquitto as Debian installs it (/etc/mosquitto/mosquitto.conf), with persistence
    off (QoS 1 acknowledged from memory) and anonymous access on a loopback listener;
    ``overrides`` is a tuple of extra config lines (the mosquitto-nodelay variant)."""
    d = os.path.join(tmp, name + tag)
    os.makedirs(d)
    port = free_port()
    log = os.path.join(d, "mosquitto.log")
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            # Debian's file sets pid_file (not a service here), persistence true with
            # its persistence_location, log_dest file; everything else is mosquitto's
            # built-in default
            "persistence false",
            "log_dest file " + log,
            # anonymous access on loopback (mosquitto 2 refuses it without a listener)
            "listener %d 127.0.0.1" % port,
            "allow_anonymous true",
            # as root mosquitto would switch to user 'mosquitto', unable to write the log
            "user %s" % ("root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")),
            *(overrides or ()),
            "",
        ]))
    return Broker(name, "mosquitto", [args.mosquitto, "-c", conf], port, log, d,
                  overrides=overrides)


#: The harness's mqttd is one process (server.workers = 0), whatever the appliance's
#: default (one worker per core): the stand-ins (core_broker.py, nodisk_mqttd.py,
#: nohttp_mqttd.py) patch pieces of that one process, which a tree would leave to
#: unpatched children, and profile_mqttd.py samples one pid. The tree runs as its own
#: targets, mqttd-wN (--with-workers N); --mqttd-set server.workers=N changes every mqttd.
ONE_PROCESS = {"server": {"workers": 0}}


def mqttd_config(args, overrides=None):
    """The generated mqttd config: harness base, then --mqttd-extra-toml, --mqttd-set, variant."""
    doc = {**ONE_PROCESS, "auth": {"allow_anonymous": True},
           "broker": {"max_inflight": args.mqttd_max_inflight}}
    if args.mqttd_extra_toml:
        with open(args.mqttd_extra_toml, "rb") as f:
            doc = merge(doc, tomllib.load(f))
    for item in args.mqttd_set or ():
        doc = merge(doc, item)
    if overrides:
        doc = merge(doc, overrides)
    return doc


def make_mqttd(tmp, args, name="mqttd", tag="", overrides=None, nodisk=None, nohttp=False,
               source=None, metrics=False):
    """``source``: a checkout whose ``mqttd`` package runs instead of this one
    (PYTHONPATH), for --with-baseline. ``metrics``: with metrics_site/ on PYTHONPATH,
    so ``read_metrics()`` gets the counters of every process (metrics_mqttd.py)."""
    d = os.path.join(tmp, name + tag)
    data = os.path.join(d, "data")
    os.makedirs(data)
    port = free_port()
    log = os.path.join(d, "mqttd.log")
    cfg = os.path.join(d, "mqttd.toml")
    doc = mqttd_config(args, overrides)
    # Each mqttd its own metrics port: two on the default one (9883) and the second
    # would not start (its tree exits on "Address already in use").
    if "http_listen" not in doc.get("manage", {}):
        doc = merge(doc, {"manage": {"http_listen": f"tcp:{free_port()}:interface=127.0.0.1"}})
    with open(cfg, "w") as f:
        f.write(dump_toml(doc))
    workers = doc.get("server", {}).get("workers")
    if getattr(args, "core", False):
        # The broker core alone, in-memory store: no durability check possible.
        argv = [sys.executable, os.path.join(HERE, "core_broker.py"), "--port", str(port),
                "--config", cfg]
        return Broker(name, "mqttd-core", argv, port, log, d, overrides=overrides,
                      workers=workers)
    argv = [args.twistd, "-n", "--pidfile", os.path.join(d, "twistd.pid"),
            "--logfile", log, "mqttd", "--config", cfg,
            "--listen", "tcp:%d:interface=127.0.0.1" % port, "--data-dir", data]
    if nodisk if nodisk is not None else getattr(args, "nodisk", False):
        # The whole appliance with the SQLite write taken out: no durability check.
        argv = [sys.executable, os.path.join(HERE, "nodisk_mqttd.py")] + argv[1:]
        return Broker(name, "mqttd-nodisk", argv, port, log, d, overrides=overrides,
                      workers=workers)
    if nohttp:
        # Durable (real commit before PUBACK), the webhook's HTTP request taken out.
        argv = [sys.executable, os.path.join(HERE, "nohttp_mqttd.py")] + argv[1:]
        return Broker(name, "mqttd-nohttp", argv, port, log, d,
                      db=os.path.join(data, "mqttd.db"), overrides=overrides, workers=workers)
    env = None
    if source is not None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [os.path.abspath(source), os.environ.get("PYTHONPATH")])))
    metrics_dir = None
    if metrics:
        metrics_dir = os.path.join(d, "metrics")
        os.makedirs(metrics_dir)
        env = dict(env or os.environ, MQTTD_METRICS_DIR=metrics_dir)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [
            os.path.join(HERE, "metrics_site"), env.get("PYTHONPATH")]))
    broker = Broker(name, "mqttd", argv, port, log, d, db=os.path.join(data, "mqttd.db"),
                    overrides=overrides, env=env, workers=workers)
    broker.metrics_dir = metrics_dir
    return broker




FACTORIES = {"mosquitto": make_mosquitto, "mqttd": make_mqttd, "mqttd-core": make_mqttd,
             "mqttd-nodisk": make_mqttd, "mqttd-nohttp": make_mqttd}


CEILING = "mqttd-nodisk"
"""--with-ceiling's target: the appliance without its SQLite write, run beside the others."""
NOHTTP = "mqttd-nohttp"
"""--with-nohttp's target: the durable appliance without the webhook's HTTP request."""
BASELINE = "mqttd-base"
"""--with-baseline's target: the durable appliance from another checkout (the A of an A/B)."""


@contextlib.contextmanager
def running(brokers, settle=2.0):
    """Every one of ``brokers`` started, its port open, then ``settle`` seconds (a tree's
    workers and ingest child up); every one stopped at the end, whatever happened."""
    try:
        for b in brokers:
            b.start()
        for b in brokers:
            b.wait_port()
        time.sleep(settle)
        yield brokers
    finally:
        for b in brokers:
            b.stop()


def tree_name(workers):
    """--with-workers N's target: the durable appliance as a process tree (server.workers = N)."""
    return "mqttd-w%d" % workers


def tree_overrides(workers):
    return {"server": {"workers": workers}}
