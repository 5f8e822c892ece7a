#!/usr/bin/env bash
# Set up (if needed) and run the whole trial suite; ends with a plain `N passed, M failed`
# line taken from trial's summary. Extra arguments replace the default test selection.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
log=$(mktemp)
.venv/bin/trial --jobs 2 "${@:-tests}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(PASSED|FAILED) \(' "$log" | tail -n 1)
rm -f "$log"
field() { echo "$summary" | grep -oE "$1=[0-9]+" | cut -d= -f2 || true; }
passed=$(field successes); passed=${passed:-0}
failed=0
for f in failures errors unexpectedSuccesses; do
    n=$(field "$f"); failed=$((failed + ${n:-0}))
done
skipped=$(field skips); skipped=${skipped:-0}
if [ -z "$summary" ]; then
    failed=$((failed + 1)); echo "test: trial printed no summary"
fi
if [ "$skipped" -gt 0 ]; then
    echo "test: $skipped test(s) skipped; skips are failures here"; failed=$((failed + skipped))
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
