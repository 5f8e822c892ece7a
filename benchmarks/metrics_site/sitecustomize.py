"""Imported by every Python process of a broker started with this folder on PYTHONPATH
(brokers.make_mqttd(metrics=True)): the twistd master and each child the supervisor
spawns, since they inherit the environment. Benchmarking only: see metrics_mqttd.py."""
import os

if os.environ.get("MQTTD_METRICS_DIR"):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import metrics_mqttd

    metrics_mqttd.install_from_env()
    del sys.path[0]
