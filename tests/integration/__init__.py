"""Integration tests: the real ``twistd -n mqttd`` process driven by real MQTT clients.

Run with ``.venv/bin/trial tests.integration``. Set ``MQTTD_TEST_BROKER=mosquitto`` to run
the same tests against Debian's mosquitto as a reference broker (tests of mqttd-only
features are skipped there).
"""
