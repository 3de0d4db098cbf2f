#!/usr/bin/env bash
# Failover time: SIGKILL of the primary (and its processes) to the first acknowledged write
# through Switchyard, with the default failure detection (check_interval 300 ms,
# failure_threshold 3), 8 writers, a primary and two streaming replicas on this machine.
# Runs the end-to-end test RUNS times (default 5) and prints each figure and the median.
#
#   RUNS=5 benches/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo test --release --test pg_failover --no-run >/dev/null 2>&1 || cargo test --release --test pg_failover --no-run
times=()
for i in $(seq "$RUNS"); do
    out=$(cargo test --release --test pg_failover a_killed_primary -- --nocapture 2>&1) || {
        echo "run $i failed:"; echo "$out" | tail -20; exit 1; }
    t=$(grep -o 'first acknowledged write: [0-9.]*[mµ]\?s' <<<"$out" | awk '{print $4}' || true)
    [ -n "$t" ] || { echo "run $i failed:"; echo "$out" | tail -20; exit 1; }
    # Normalize to milliseconds.
    case $t in *ms) ms=${t%ms} ;; *µs) ms=$(awk "BEGIN{print ${t%µs}/1000}") ;; *s) ms=$(awk "BEGIN{print ${t%s}*1000}") ;; esac
    echo "run $i: ${ms} ms"
    times+=("$ms")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median of %d runs: %.0f ms (min %.0f, max %.0f)\n", NR, m, a[1], a[NR]}'
