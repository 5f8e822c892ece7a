#!/usr/bin/env bash
# Set up a development/run environment on Debian 12: system packages, then a virtualenv
# in .venv with mqttd installed (editable). `--test` adds what the test suite needs.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)

apt_install() {
    echo "setup: installing Debian packages: $*"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v python3 >/dev/null || missing+=(python3)
if [ "$want_test" = 1 ]; then
    # strace: tests/integration/test_fsync.py traces the broker's fsyncs.
    # redis-server: tests/integration/test_cluster*.py start a private one each.
    for p in mosquitto mosquitto-clients strace redis-server; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
fi
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
if [ "$want_test" = 1 ]; then
    # Tests start their own brokers; Debian's postinst may have started a system one.
    "${sudo_cmd[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true
    "${sudo_cmd[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/pip ]; then
    rm -rf .venv
    # Debian ships venv's pip bootstrap separately (python3-venv).
    python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
fi
extra=""
[ "$want_test" = 1 ] && extra="[test]"
stamp=".venv/.mqttd-installed$extra-$(sha1sum setup.py | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    echo "setup: installing mqttd$extra into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    # compat mode puts the checkout on sys.path, so twistd finds twisted/plugins/mqttd_plugin.py
    .venv/bin/pip install -q -e ".$extra" --config-settings editable_mode=compat
    touch "$stamp"
fi
