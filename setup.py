"""mqttd: an MQTT ingestion appliance on Twisted.

Pinned dependencies: the appliance is shipped as a self-contained virtualenv, so the
versions tested are the versions run.
"""
from setuptools import find_packages, setup

setup(
    name="mqttd",
    version="0.1.0",
    description="MQTT ingestion appliance: an ACK means the data is in the database",
    python_requires=">=3.11",
    packages=find_packages(include=["mqttd", "mqttd.*"]) + ["twisted.plugins"],
    install_requires=[
        "twisted==26.10.0",
        "treq==26.7.0",
        "txredisapi==1.6.0",
        "attrs==26.1.0",
        "sqlite-utils==4.2.1",
        # https:// webhook URLs (Twisted's TLS, what twisted[tls] pulls in): without
        # them every batch to an https webhook would fail at request time.
        "pyOpenSSL==26.4.0",
        "service-identity==26.1.0",
    ],
    # The operator's command (accounts, tokens, bans). The Debian package's /usr/bin/mqttd
    # is a wrapper that hands these commands to it and runs `twistd mqttd` otherwise.
    entry_points={"console_scripts": ["mqttd = mqttd.manage.cli:main"]},
    extras_require={
        "test": [
            "hypothesis==6.170.15",
            "paho-mqtt==2.2.0",
        ],
    },
)
