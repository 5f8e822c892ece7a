"""Helpers of the integration tests, one module per job: the broker process, paho
clients, the raw MQTT client, mosquitto's command-line clients, database reads, the
fault-injecting HTTP proxy, and ``BrokerTestCase`` binding them to a fresh broker.

Everything here blocks, and every wait is bounded (see ``common``).
"""
