#!/usr/bin/env bash
# packaging/check-deb.sh: prove the Debian package end to end, on Debian 12, as root.
#
#   1. install the build dependencies (apt-get build-dep on debian/control) and tools;
#   2. build the .deb with dpkg-buildpackage -us -uc -b in a temporary copy of this
#      checkout (git-tracked and untracked-but-not-ignored files; never .venv), so the
#      work tree stays clean; the build runs the trial suite against the built venv
#      unless DEB_BUILD_OPTIONS contains nocheck;
#   3. inspect the .deb and run lintian on it (no errors allowed);
#   4. apt install it; check user, directories, permissions, plugin cache, unit file;
#   5. add a user to /etc/mqttd/mqttd.toml, run the unit's ExecStart as the mqttd user
#      (no systemd here) on a free loopback port, publish a QoS 1 message with
#      mosquitto_pub and find its row in /var/lib/mqttd/mqttd.db; as root, run
#      `mqttd accounts add` and `mqttd tokens add` on it and check that every database
#      file stays the mqttd user's; log in to its telnet manhole with the generated
#      password (help() answers, a wrong password is refused) and ask `mqttd report`; stop it.
#      That is the process tree (server.workers defaults to one worker per usable
#      core): ps shows the named master, its N workers and ingest child as the mqttd
#      user; all exit on SIGTERM;
#   5b. set server.workers = 0 and do the same in one process (no children);
#   6. apt-get remove (state and conffiles stay), then apt-get purge, and check that
#      nothing is left: package files, /opt/venvs/mqttd, /etc/mqttd, /var/lib/mqttd,
#      /var/log/mqttd, the mqttd user and group, files owned by them.
#
# Environment:
#   CHECK_DEB_NOCHECK=1   add nocheck to DEB_BUILD_OPTIONS (CI runs the suite separately)
#   DEB_BUILD_OPTIONS     passed to dpkg-buildpackage as given (e.g. "nocheck parallel=2")
#   CHECK_DEB_KEEP=DIR    copy the built .deb, build log and lintian output into DIR
#
# Idempotent and non-interactive: a leftover mqttd package from an earlier run is
# purged first, and the package is purged again on exit whatever happened. Prints every
# check; exits non-zero if any failed. Ends with "check-deb: N passed, M failed".
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/check-deb.XXXXXX)
SECONDS=0
passed=0
failed=0
broker_pid=""
we_installed=0

section() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }
# check DESCRIPTION COMMAND...: one check, the command's output shown only on failure.
check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/        /' | tail -n 20; fi
}
summary() {
    printf '\ncheck-deb: total time %dm%02ds (%ss)\n' $((SECONDS / 60)) $((SECONDS % 60)) "$SECONDS"
    echo "check-deb: $passed passed, $failed failed"
}
fatal() {
    bad "$*"
    echo "check-deb: stopping here; work directory kept: $work"
    exit 1
}
pkg_state() { dpkg-query -W -f='${db:Status-Abbrev}' mqttd 2>/dev/null | tr -d ' ' || true; }
stopped_by=""
twistd_pid=""
stop_broker() {
    [ -n "$broker_pid" ] || return 0
    # Like systemd: SIGTERM to the main process (twistd); runuser exits after it.
    kill -TERM "${twistd_pid:-$broker_pid}" 2>/dev/null || true
    stopped_by=SIGKILL
    for _ in $(seq 150); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then stopped_by=SIGTERM; break; fi
        sleep 0.1
    done
    kill -KILL -- "-$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
}
on_exit() {
    local status=$?
    trap - EXIT
    stop_broker
    if [ "$we_installed" = 1 ] && [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != "un" ]; then
        echo "check-deb: purging the mqttd package left installed by this run"
        apt-get purge -y -q mqttd >/dev/null 2>&1 || true
    fi
    if [ "$failed" -eq 0 ] && [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "check-deb: work directory kept: $work"; fi
    summary
    [ "$failed" -eq 0 ] && [ "$status" -eq 0 ] || exit 1
}
trap on_exit EXIT
trap 'echo "check-deb: unexpected error at line $LINENO: $BASH_COMMAND"; failed=$((failed + 1))' ERR

[ "$(id -u)" -eq 0 ] || { echo "check-deb: must run as root (apt, runuser)"; exit 1; }

# ------------------------------------------------------------------ 0. clean slate
section "clean slate"
if [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != "un" ]; then
    echo "  mqttd is installed ($(pkg_state)) from an earlier run: purging it first"
    apt-get purge -y -q mqttd >/dev/null
fi
opt_venvs_existed=0
[ -e /opt/venvs ] && opt_venvs_existed=1
check "mqttd package not installed" test -z "$(dpkg-query -W -f='${db:Status-Abbrev}' mqttd 2>/dev/null | grep -v '^un' || true)"

# ------------------------------------------------------------------ 1. copy and build deps
section "copy the source tree"
version=$(sed -n '1s/^mqttd (\([^)]*\)).*/\1/p' "$repo/debian/changelog")
src="$work/mqttd-$version"
mkdir -p "$src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files plus untracked ones that .gitignore does not exclude (new work);
    # deleted files are skipped.
    git -C "$repo" ls-files -z --cached --others --exclude-standard |
        (cd "$repo" && while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done) |
        tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
else
    tar -C "$repo" --exclude=.venv --exclude=.git --exclude='_trial_temp*' --exclude=.hypothesis \
        --exclude='*.egg-info' --exclude=build --exclude=var -cf - . | tar -C "$src" -xf -
fi
echo "  $(find "$src" -type f | wc -l) files copied to $src"
check "copy has debian/, setup.py, no .venv" test -d "$src/debian" -a -f "$src/setup.py" -a ! -e "$src/.venv"
setup_version=$(sed -n 's/^ *version *= *"\([^"]*\)".*/\1/p' "$src/setup.py")
check "debian/changelog version ($version) matches setup.py ($setup_version)" test "$version" = "$setup_version"

section "build dependencies"
tools=(lintian mosquitto-clients logrotate)
missing_tools=()
for p in "${tools[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_tools+=("$p")
done
if ! command -v dpkg-checkbuilddeps >/dev/null || ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1) || [ "${#missing_tools[@]}" -gt 0 ]; then
    echo "  apt-get update; apt-get build-dep (debian/control); apt-get install ${missing_tools[*]:-}"
    apt-get update -q >"$work/apt.log" 2>&1 || fatal "apt-get update (see $work/apt.log)"
    apt-get install -y -q --no-install-recommends dpkg-dev build-essential "${missing_tools[@]}" >>"$work/apt.log" 2>&1 \
        || fatal "apt-get install tools (see $work/apt.log)"
    apt-get build-dep -y -q "$src" >>"$work/apt.log" 2>&1 || fatal "apt-get build-dep (see $work/apt.log)"
else
    echo "  already installed"
fi
check "Build-Depends satisfied (dpkg-checkbuilddeps)" bash -c "cd '$src' && dpkg-checkbuilddeps"

# ------------------------------------------------------------------ 2. build
build_opts=${DEB_BUILD_OPTIONS:-}
if [ "${CHECK_DEB_NOCHECK:-0}" = 1 ] && [[ " $build_opts " != *" nocheck "* ]]; then
    build_opts="${build_opts:+$build_opts }nocheck"
fi
section "build: DEB_BUILD_OPTIONS='$build_opts' dpkg-buildpackage -us -uc -b"
build_start=$SECONDS
if ! (cd "$src" && DEB_BUILD_OPTIONS="$build_opts" dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log" | sed 's/^/        /'
    fatal "dpkg-buildpackage (full log: $work/build.log)"
fi
ok "dpkg-buildpackage in $((SECONDS - build_start))s"
grep -E '^(check-venv|run-tests):' "$work/build.log" | sed 's/^/        /' || true
if [[ " $build_opts " == *" nocheck "* ]]; then
    echo "  test suite not run in the build (nocheck)"
else
    trial_summary=$(grep -E '^(Ran [0-9]+ tests|PASSED|FAILED)' "$work/build.log" | tail -n 2 | tr '\n' ' ')
    check "trial suite against the built venv: $trial_summary" grep -qE '^PASSED' "$work/build.log"
fi
debs=("$work"/mqttd_*.deb)
[ "${#debs[@]}" -eq 1 ] && [ -f "${debs[0]}" ] || fatal "expected one mqttd_*.deb in $work, found: ${debs[*]}"
deb=${debs[0]}
echo "  built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
check "working tree untouched (no ../*.deb, no debian/mqttd in $repo)" \
    bash -c "! ls '$repo'/../mqttd_*.deb >/dev/null 2>&1 && [ ! -e '$repo/debian/mqttd' ]"

# ------------------------------------------------------------------ 3. inspect and lint
section "inspect the .deb"
# Paths in the .deb, as dpkg -L writes them: "/etc/mqttd", no "./", no trailing "/".
dpkg-deb --fsys-tarfile "$deb" | tar -tf - | sed -e 's|^\./|/|' -e 's|/$||' -e '/^$/d' >"$work/contents.txt"
has() { grep -qxF "$1" "$work/contents.txt"; }
check "ships /usr/bin/mqttd" has /usr/bin/mqttd
check "ships the venv's twistd" has /opt/venvs/mqttd/bin/twistd
check "ships the venv's mqttd console script (the operator's commands)" has /opt/venvs/mqttd/bin/mqttd
check "mqttd_plugin.py in the venv's site-packages/twisted/plugins/" \
    grep -qE '^/opt/venvs/mqttd/lib/python3[.0-9]+/site-packages/twisted/plugins/mqttd_plugin.py$' "$work/contents.txt"
check "mqttd installed non-editable (package files in site-packages/mqttd/)" \
    grep -qE '^/opt/venvs/mqttd/lib/python3[.0-9]+/site-packages/mqttd/config.py$' "$work/contents.txt"
check "ships the systemd unit" has /lib/systemd/system/mqttd.service
check "ships the logrotate file" has /etc/logrotate.d/mqttd
check "no bytecode, no dropin.cache shipped (postinst makes them)" \
    bash -c "! grep -qE '__pycache__|\\.pyc\$|dropin\\.cache' '$work/contents.txt'"
check "/etc/mqttd/mqttd.toml is a conffile" bash -c "dpkg-deb -I '$deb' conffiles | grep -qx /etc/mqttd/mqttd.toml"
check "packaged config sets data_dir = \"/var/lib/mqttd\"" \
    bash -c "dpkg-deb --fsys-tarfile '$deb' | tar -xOf - ./etc/mqttd/mqttd.toml | grep -qx 'data_dir = \"/var/lib/mqttd\"'"
pyver=$(basename "$(readlink -e /usr/bin/python3)")
check "Depends on $pyver (the venv's interpreter)" bash -c "dpkg-deb -f '$deb' Depends | grep -qw '$pyver'"
twisted_pin=$(sed -n 's/.*"twisted==\([^"]*\)".*/\1/p' "$src/setup.py")
check "venv has Twisted $twisted_pin as pinned in setup.py" \
    grep -qiE "/site-packages/twisted-$twisted_pin\\.dist-info\$" "$work/contents.txt"

section "lintian"
lintian_rc=0
lintian --fail-on error "$deb" >"$work/lintian.txt" 2>&1 || lintian_rc=$?
n_e=$(grep -c '^E: ' "$work/lintian.txt" || true)
n_w=$(grep -c '^W: ' "$work/lintian.txt" || true)
grep -E '^[EW]: ' "$work/lintian.txt" | sed 's/^/        /' || true
check "lintian: $n_e errors, $n_w warnings (exit $lintian_rc)" test "$lintian_rc" -eq 0 -a "$n_e" -eq 0

if [ -n "${CHECK_DEB_KEEP:-}" ]; then
    mkdir -p "$CHECK_DEB_KEEP"
    cp "$deb" "$work/build.log" "$work/lintian.txt" "$CHECK_DEB_KEEP/"
    echo "  kept the .deb, build log and lintian output in $CHECK_DEB_KEEP"
fi

# ------------------------------------------------------------------ 4. install
section "apt install $(basename "$deb")"
# What already existed (/opt, /usr/bin, ...) is not the package's to remove.
python3 -c 'import os, sys; [print(p) for p in map(str.strip, open(sys.argv[1])) if os.path.lexists(p)]' \
    "$work/contents.txt" >"$work/preexisting.txt"
echo "  $(wc -l <"$work/preexisting.txt") of the package's paths existed before (e.g. /usr/bin)"
we_installed=1
apt-get install -y -q "$deb" >"$work/install.log" 2>&1 || { sed 's/^/        /' "$work/install.log" | tail -n 30; fatal "apt install"; }
ok "apt install"
check "package state ii" test "$(pkg_state)" = "ii"
dpkg -L mqttd >"$work/dpkg-L.txt"
dpkg-query -W -f='${Conffiles}\n' mqttd | awk 'NF {print $1}' >"$work/conffiles.txt"
echo "  $(wc -l <"$work/dpkg-L.txt") paths in dpkg -L mqttd; conffiles: $(tr '\n' ' ' <"$work/conffiles.txt")"

perm() { [ "$(stat -c '%U:%G %a' "$1")" = "$2" ] || { echo "$1 is $(stat -c '%U:%G %a' "$1"), want $2"; return 1; }; }
uid=$(id -u mqttd 2>/dev/null || echo "")
gid=$(getent group mqttd | cut -d: -f3 || true)
check "system user mqttd (uid ${uid:-none} < 1000), home /var/lib/mqttd, no login shell" bash -c \
    "[ -n '$uid' ] && [ '$uid' -lt 1000 ] && [ \"\$(getent passwd mqttd | cut -d: -f6)\" = /var/lib/mqttd ] && getent passwd mqttd | cut -d: -f7 | grep -q nologin"
check "group mqttd" test -n "$gid"
check "/var/lib/mqttd mqttd:mqttd 750" perm /var/lib/mqttd "mqttd:mqttd 750"
check "/var/log/mqttd mqttd:mqttd 750" perm /var/log/mqttd "mqttd:mqttd 750"
check "/etc/mqttd root:mqttd 750" perm /etc/mqttd "root:mqttd 750"
check "/etc/mqttd/mqttd.toml root:mqttd 640" perm /etc/mqttd/mqttd.toml "root:mqttd 640"
check "/etc/mqttd/manhole.passwd root:mqttd 640" perm /etc/mqttd/manhole.passwd "root:mqttd 640"
check "manhole.passwd holds admin:<32 random chars>" grep -qE '^admin:[A-Za-z0-9]{32}$' /etc/mqttd/manhole.passwd
check "venv runs Debian's $(readlink -e /usr/bin/python3)" \
    test "$(readlink -e /opt/venvs/mqttd/bin/python)" = "$(readlink -e /usr/bin/python3)"
check "Twisted plugin cache (dropin.cache) generated and names mqttd_plugin" bash -c \
    "grep -aq mqttd_plugin /opt/venvs/mqttd/lib/python3*/site-packages/twisted/plugins/dropin.cache"
check "bytecode compiled by postinst" bash -c "ls /opt/venvs/mqttd/lib/python3*/site-packages/mqttd/__pycache__/*.pyc >/dev/null"
check "'mqttd --help' as the mqttd user shows the mqttd options" bash -c \
    "cd /var/lib/mqttd && runuser -u mqttd -- mqttd --help 2>&1 | grep -q -- '--data-dir'"
check "twistd as the mqttd user lists the mqttd plugin without cache warnings" bash -c \
    "cd /var/lib/mqttd && out=\$(runuser -u mqttd -- /opt/venvs/mqttd/bin/twistd --help 2>&1) && echo \"\$out\" | grep -q '^ *mqttd ' && ! echo \"\$out\" | grep -qi 'dropin\\|cache'"
unit=/lib/systemd/system/mqttd.service
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
want_exec="/opt/venvs/mqttd/bin/twistd --nodaemon --pidfile= mqttd --config /etc/mqttd/mqttd.toml"
check "unit ExecStart: $execstart" test "$execstart" = "$want_exec"
check "unit User=mqttd, Restart=on-failure, LimitNOFILE=262144, MemoryMax=80%" bash -c \
    "grep -qx User=mqttd '$unit' && grep -qx Restart=on-failure '$unit' && grep -qx LimitNOFILE=262144 '$unit' && grep -qx MemoryMax=80% '$unit'"
check "unit KillMode=mixed (the master orders its children's stop), ExecReload sends SIGHUP" bash -c \
    "grep -qx KillMode=mixed '$unit' && grep -qx 'ExecReload=/bin/kill -HUP \$MAINPID' '$unit'"
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify mqttd.service" systemd-analyze verify "$unit"
fi
check "logrotate -d /etc/logrotate.d/mqttd" logrotate -d /etc/logrotate.d/mqttd

# ------------------------------------------------------------------ 5. run and publish
section "run the unit's ExecStart as the mqttd user and publish"
password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
cat >>/etc/mqttd/mqttd.toml <<EOF

# added by packaging/check-deb.sh
[[auth.users]]
username = "check-deb"
password = "$password"
EOF
ok "added user check-deb to /etc/mqttd/mqttd.toml ([[auth.users]])"
# LimitNOFILE=262144 as far as this machine's hard limit allows (containers cap it).
nofile=262144
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge "$nofile" ] || nofile=$hard
read -ra unit_cmd <<<"$execstart"

# start_broker LOG: run the unit's ExecStart as the mqttd user on a free loopback port;
# sets port, broker_pid, twistd_pid.
start_broker() {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local cmd=("${unit_cmd[@]}" --listen "tcp:$port:interface=127.0.0.1")
    echo "  runuser -u mqttd -- prlimit --nofile=$nofile -- ${cmd[*]}   (cwd /var/lib/mqttd)"
    # setsid: the broker gets its own session and process group, cleaned up by its id.
    # prlimit: runuser's PAM session (pam_limits) resets the soft limit to 1024.
    (cd /var/lib/mqttd && exec setsid runuser -u mqttd -- prlimit --nofile="$nofile" -- "${cmd[@]}") >"$1" 2>&1 &
    broker_pid=$!
    local listening=0
    for _ in $(seq 300); do
        kill -0 "$broker_pid" 2>/dev/null || break
        if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 0.5).close()" 2>/dev/null; then
            listening=1
            break
        fi
        sleep 0.1
    done
    if [ "$listening" != 1 ]; then
        sed 's/^/        /' "$1" | tail -n 40
        fatal "mqttd listening on 127.0.0.1:$port within 30s"
    fi
    ok "mqttd listening on 127.0.0.1:$port"
    twistd_pid=$(ps -o pid=,user=,args= --sid "$broker_pid" | awk '$2 == "mqttd" && /twistd/ {print $1; exit}')
    check "twistd runs as user mqttd (pid ${twistd_pid:-none})" test -n "$twistd_pid"
}

row_check() {
    python3 - "$payload" <<'PY'
import sqlite3, sys
want = sys.argv[1].encode()
db = sqlite3.connect("file:/var/lib/mqttd/mqttd.db?mode=ro", uri=True)
rows = [bytes(r[0]) for r in db.execute("select payload from messages")]
print(f"{len(rows)} row(s) in messages; ours: {want in rows}")
sys.exit(0 if want in rows else 1)
PY
}

# publish_and_find CLIENT_ID: a QoS 1 message with the check-deb user, then its row.
publish_and_find() {
    payload="check-deb $1 $(date +%s.%N) $RANDOM"
    check "mosquitto_pub -q 1 with the new user's credentials (PUBACK received)" \
        timeout 30 mosquitto_pub -h 127.0.0.1 -p "$port" -i "$1" -u check-deb -P "$password" \
        -q 1 -t check-deb/t1 -m "$payload"
    check "row found: select payload from messages in /var/lib/mqttd/mqttd.db" row_check
}

# stop_and_check LOG
stop_and_check() {
    stop_broker
    check "mqttd stopped by SIGTERM within 15s" test "$stopped_by" = SIGTERM
    if grep -q 'Traceback' "$1"; then
        bad "mqttd logged no traceback"
        sed 's/^/        /' "$1" | tail -n 40
    else
        ok "mqttd logged no traceback"
    fi
}

# children_named WANT: the names of twistd's children as user mqttd (sorted, each
# followed by a space) become WANT within 10s.
children_named() {
    for _ in $(seq 100); do
        names=$(ps -o user=,comm= --ppid "$twistd_pid" | awk '$1 == "mqttd" {print $2}' | sort | tr '\n' ' ')
        [ "$names" = "$1" ] && return 0
        sleep 0.1
    done
    echo "children of $twistd_pid as user mqttd: '$names', want '$1'"
    return 1
}

# manhole_checks: the packaged config turns the manhole on with the password postinst
# made; as root, `mqttd manhole` logs in with it and help() lists the helpers, a wrong
# password is refused (and logged with the peer), and `mqttd report` answers.
manhole_checks() {
    check "packaged config sets manage.manhole_password_file = /etc/mqttd/manhole.passwd" \
        grep -qx 'manhole_password_file = "/etc/mqttd/manhole.passwd"' /etc/mqttd/mqttd.toml
    check "the manhole answers help() with the generated password (mqttd manhole -e 'help()')" \
        bash -c "out=\$(timeout 30 mqttd manhole -e 'help()') && echo \"\$out\" | grep -q '  kick(client_id' && echo \"\$out\" | grep -q '  report()'"
    printf 'admin:wrong-password\n' >"$work/wrong.passwd"
    check "the manhole refuses a wrong password" bash -c \
        "! timeout 30 mqttd manhole --password-file '$work/wrong.passwd' -e 'help()'"
    check "the refusal is logged with the peer" bash -c \
        "for _ in \$(seq 50); do grep -q \"manhole: login refused for 'admin' from 127.0.0.1:\" '$1' && exit 0; sleep 0.1; done; exit 1"
    check "mqttd report --json answers with the report" bash -c \
        "timeout 30 mqttd report --json | python3 -c 'import json, sys; r = json.load(sys.stdin); sys.exit(0 if \"top_ips\" in r and r[\"workers\"] else 1)'"
}

# The packaged default: the process tree, one worker per core the service may use.
check "the packaged mqttd.toml leaves server.workers unset (default: one per usable core)" \
    bash -c "! grep -qE '^workers *=' /etc/mqttd/mqttd.toml"
cores=$(python3 -c 'import os; print(min(256, len(os.sched_getaffinity(0))))')
want_tree="mqttd-ingest $(for n in $(seq "$cores"); do echo "mqttd-worker-$n"; done | sort | tr '\n' ' ')"
start_broker "$work/mqttd.log"
if [ -n "$twistd_pid" ]; then
    check "its open-files limit is $nofile (LimitNOFILE=262144 capped by this machine's hard limit $hard)" \
        bash -c "grep -qE '^Max open files +$nofile +$nofile ' /proc/$twistd_pid/limits"
fi
check "ps shows $cores worker(s) (this machine's usable cores) and mqttd-ingest under the master, as mqttd" \
    children_named "$want_tree"
check "the master is named mqttd-master" bash -c "[ \"\$(cat /proc/$twistd_pid/comm)\" = mqttd-master ]"
publish_and_find check-deb-pub
check "a wrong password is refused" bash -c \
    "! timeout 30 mosquitto_pub -h 127.0.0.1 -p $port -i check-deb-bad -u check-deb -P wrong -q 1 -t check-deb/t1 -m x"
check "/var/lib/mqttd/mqttd.db owned by mqttd" bash -c "[ \"\$(stat -c %U /var/lib/mqttd/mqttd.db)\" = mqttd ]"

# trace_events CLIENT_ID EVENT...: the packaged per-client trace holds these events of
# CLIENT_ID, in this order (within 10 s).
trace_events() {
    python3 - "$@" <<'PY'
import json, sys, time
client_id, want = sys.argv[1], sys.argv[2:]
for _ in range(100):
    with open("/var/log/mqttd/trace.jsonl") as f:
        got = [e["event"] for e in map(json.loads, f) if e["client_id"] == client_id]
    if got == want:
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"trace events of {client_id}: {got}, want {want}")
PY
}
check "the trace (/var/log/mqttd/trace.jsonl): check-deb-pub's auth, connect, disconnect" \
    trace_events check-deb-pub auth connect disconnect
check "/var/log/mqttd/trace.jsonl owned by mqttd" bash -c "[ \"\$(stat -c %U /var/log/mqttd/trace.jsonl)\" = mqttd ]"
check "as root: mqttd trace add client_id=check-deb-traced" mqttd trace add client_id=check-deb-traced
rules_in_force() {  # the master and every worker logged the rule (within 10 s)
    for _ in $(seq 100); do
        [ "$(grep -c 'trace: 1 rule(s) in force' "$work/mqttd.log")" -ge $((cores + 1)) ] && return 0
        sleep 0.1
    done
    return 1
}
check "the rule is in force in the master and every worker" rules_in_force
timeout 30 mosquitto_pub -h 127.0.0.1 -p "$port" -i check-deb-traced -u check-deb -P "$password" \
    -q 1 -t check-deb/t2 -m traced
check "the traced client's publish and its ack are in the trace" \
    trace_events check-deb-traced auth connect publish ack disconnect
check "logrotate -f /etc/logrotate.d/mqttd (copytruncate) leaves trace.jsonl in place" bash -c \
    "logrotate -f /etc/logrotate.d/mqttd && test -f /var/log/mqttd/trace.jsonl.1"

# The operator's commands, as root, on the running appliance's data dir (the default
# config, /etc/mqttd/mqttd.toml, names it): the CLI becomes the data dir's owner before
# it opens the database, so none of mqttd.db, -wal, -shm turns root's.
cli_check() {
    mqttd accounts add acme --max-connections 10 >"$work/cli.log" 2>&1 || { cat "$work/cli.log"; return 1; }
    token=$(mqttd tokens add acme 2>>"$work/cli.log" | tail -n 1)
    [[ "$token" =~ ^[A-Za-z0-9_-]{32}$ ]] || { echo "last line of tokens add is not a token: '$token'"; cat "$work/cli.log"; return 1; }
    mqttd tokens list --account acme --json | python3 -c 'import json, sys
tokens = json.load(sys.stdin)["tokens"]
sys.exit(0 if [t["account"] for t in tokens] == ["acme"] else f"tokens list: {tokens}")'
}
check "as root: mqttd accounts add acme, mqttd tokens add acme (the token alone on its last line)" cli_check
db_files_owned_by_mqttd() {
    local f
    for f in /var/lib/mqttd/mqttd.db*; do
        [ "$(stat -c %U:%G "$f")" = mqttd:mqttd ] || { echo "$f is $(stat -c %U:%G "$f")"; return 1; }
    done
}
check "every /var/lib/mqttd/mqttd.db* file is still mqttd:mqttd" db_files_owned_by_mqttd
check "'mqttd accounts --help' lists the account commands" bash -c \
    "mqttd accounts --help | grep -q disable"
manhole_checks "$work/mqttd.log"
stop_and_check "$work/mqttd.log"
check "no process of the tree is left" bash -c "! pgrep -u mqttd -f mqttd.tree.child"

# ------------------------------------------------------------------ 5b. one process
section "one process: server.workers = 0 in /etc/mqttd/mqttd.toml"
sed -i '/^\[server\]$/a workers = 0' /etc/mqttd/mqttd.toml
check "server.workers = 0 set in [server]" bash -c \
    "/opt/venvs/mqttd/bin/python -I -c 'import sys; from mqttd.config import load_config; sys.exit(load_config(sys.argv[1]).server.workers)' /etc/mqttd/mqttd.toml"
start_broker "$work/mqttd-single.log"
check "twistd has no child process" children_named ""
publish_and_find check-deb-single-pub
manhole_checks "$work/mqttd-single.log"
stop_and_check "$work/mqttd-single.log"

# ------------------------------------------------------------------ 6. remove, purge
# leftovers STAGE: paths of the package (dpkg -L) that did not exist before the install
# and still exist. After remove, conffiles and the directories holding them may stay.
leftovers() {
    python3 - "$1" "$work" <<'PY'
import os, sys
stage, work = sys.argv[1:]
def read(name):
    with open(os.path.join(work, name)) as f:
        return [line.rstrip("\n") for line in f if line.strip()]
before = set(read("preexisting.txt"))
conffiles = read("conffiles.txt")
for path in read("dpkg-L.txt"):
    if path in ("/", "/.") or path in before or not os.path.lexists(path):
        continue
    if stage == "remove" and (path in conffiles or any(c.startswith(path + "/") for c in conffiles)):
        continue
    print(path)
PY
}

section "apt-get remove mqttd (state and configuration stay)"
apt-get remove -y -q mqttd >"$work/remove.log" 2>&1 || { sed 's/^/        /' "$work/remove.log" | tail -n 30; fatal "apt-get remove"; }
ok "apt-get remove"
check "package state rc" test "$(pkg_state)" = "rc"
left=$(leftovers remove)
check "no package files left but conffiles$([ -n "$left" ] && echo ": $(echo "$left" | head -n 5 | tr '\n' ' ')")" test -z "$left"
check "/opt/venvs/mqttd gone" test ! -e /opt/venvs/mqttd
check "/usr/bin/mqttd and the unit gone" test ! -e /usr/bin/mqttd -a ! -e "$unit"
check "kept: /var/lib/mqttd/mqttd.db" test -f /var/lib/mqttd/mqttd.db
check "kept: /var/log/mqttd" test -d /var/log/mqttd
check "kept: edited /etc/mqttd/mqttd.toml with the added user" grep -q 'username = "check-deb"' /etc/mqttd/mqttd.toml
check "kept: /etc/mqttd/manhole.passwd" test -f /etc/mqttd/manhole.passwd
check "kept: user mqttd" getent passwd mqttd

section "apt-get purge mqttd (nothing left)"
apt-get purge -y -q mqttd >"$work/purge.log" 2>&1 || { sed 's/^/        /' "$work/purge.log" | tail -n 30; fatal "apt-get purge"; }
ok "apt-get purge"
check "package gone from dpkg's database" bash -c "[ -z \"\$(dpkg-query -W -f='\${db:Status-Abbrev}' mqttd 2>/dev/null | grep -v '^un')\" ]"
left=$(leftovers purge)
check "none of the $(wc -l <"$work/dpkg-L.txt") dpkg -L paths left$([ -n "$left" ] && echo ": $(echo "$left" | head -n 5 | tr '\n' ' ')")" test -z "$left"
for path in /opt/venvs/mqttd /etc/mqttd /var/lib/mqttd /var/log/mqttd /etc/logrotate.d/mqttd; do
    check "$path gone" test ! -e "$path"
done
if [ "$opt_venvs_existed" = 0 ]; then
    check "/opt/venvs gone (it did not exist before)" test ! -e /opt/venvs
fi
check "user mqttd gone" bash -c "! getent passwd mqttd"
check "group mqttd gone" bash -c "! getent group mqttd"
if [ -n "$uid" ] && [ -n "$gid" ]; then
    find /etc /var /opt /run /tmp /usr/local -xdev \( -uid "$uid" -o -gid "$gid" \) -print \
        >"$work/orphans.txt" 2>/dev/null || true
    orphans=$(awk -v w="$work" 'index($0, w) != 1' "$work/orphans.txt" | head -n 5 | tr '\n' ' ')
    check "no files owned by the old uid $uid / gid $gid${orphans:+: $orphans}" test -z "$orphans"
fi
we_installed=0
