#!/usr/bin/env bash
# The spec suite's real-clock claims under load (issue 13, item 10): RUNS
# runs of `pytest spec_tests -n 8` on this machine, then BURNT runs of
# `pytest spec_tests` while two busy processes keep both cores loaded.
# Prints one line per run and a count of failed runs; exits 1 if any failed.
#
#   benchmarks/spec_under_load.sh [RUNS=20] [BURNT=10]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
burnt=${2:-10}
logs=$(mktemp -d)
failed=0
for i in $(seq 1 "$runs"); do
    if pytest spec_tests -n 8 -q -p no:cacheprovider >"$logs/n8-$i.log" 2>&1; then
        echo "-n 8 run $i: passed ($(tail -n 1 "$logs/n8-$i.log"))"
    else
        echo "-n 8 run $i: FAILED (log: $logs/n8-$i.log)"; failed=$((failed + 1))
    fi
done
for i in $(seq 1 "$burnt"); do
    yes >/dev/null & first=$!
    yes >/dev/null & second=$!
    if pytest spec_tests -q -p no:cacheprovider >"$logs/burnt-$i.log" 2>&1; then
        echo "burnt run $i: passed ($(tail -n 1 "$logs/burnt-$i.log"))"
    else
        echo "burnt run $i: FAILED (log: $logs/burnt-$i.log)"; failed=$((failed + 1))
    fi
    kill "$first" "$second"
done
echo "$failed of $((runs + burnt)) runs failed"
[ "$failed" -eq 0 ]
