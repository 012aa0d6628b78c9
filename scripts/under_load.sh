#!/usr/bin/env bash
# Run the whole pytest suite N times (default 10) while two busy loops compete for the
# CPUs, as CI machines under load do; prints one line per run and exits non-zero if any
# run failed. The suite must pass every time: no test may depend on timing it cannot
# control. Usage (after `make test` made .venv): scripts/under_load.sh [RUNS]
set -u
cd "$(dirname "$0")/.."
runs=${1:-10}
spin() { while :; do :; done; }
spin & first=$!
spin & second=$!
trap 'kill $first $second 2>/dev/null' EXIT
failed=0
for i in $(seq "$runs"); do
    start=$(date +%s)
    if .venv/bin/python -m pytest -q -x -p no:cacheprovider >"/tmp/under_load.$i.log" 2>&1; then
        echo "run $i: passed in $(( $(date +%s) - start )) s ($(tail -1 "/tmp/under_load.$i.log"))"
    else
        failed=$((failed + 1))
        echo "run $i: FAILED in $(( $(date +%s) - start )) s, see /tmp/under_load.$i.log"
        grep -E "^(FAILED|ERROR) " "/tmp/under_load.$i.log" | head -5
    fi
done
echo "$((runs - failed)) of $runs runs passed"
[ "$failed" = 0 ]
