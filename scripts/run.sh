#!/usr/bin/env bash
# Set up (if needed) and run mqttd in the foreground on etc/mqttd.toml; extra arguments go
# to `twistd mqttd`, e.g. --listen tcp:1884 or --data-dir /tmp/mqttd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/twistd --nodaemon --pidfile= mqttd --config etc/mqttd.toml "$@"
