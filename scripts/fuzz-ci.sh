#!/usr/bin/env bash
# CI's short fuzz runs (issue 15, docs/FUZZING.md): every target in fuzz/ for
# FUZZ_SECONDS (30) on its committed seed corpus, failing on any crash, panic, timeout
# (10 s for one input) or out-of-memory (2 GB). Installs cargo-fuzz if missing (the
# nightly toolchain is on the image). Targets run two at a time (FUZZ_PARALLEL; the CI
# machine has two cores), so 8 targets x 30 s take about 2 minutes, after the fuzz build.
# The grown corpus goes to a temporary directory: the committed seeds stay as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
parallel="${FUZZ_PARALLEL:-2}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# -s none: the targets are safe Rust (plus libpg_query); without ASan a run does about twice
# the executions. Debug assertions and overflow checks stay on.
build=(-s none --codegen-units 16)
cargo "+$toolchain" fuzz build "${build[@]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-fuzz-ci.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mapfile -t targets < <(cargo "+$toolchain" fuzz list)

run_one() {
  local t="$1"
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  if cargo "+$toolchain" fuzz run "${build[@]}" "$t" "$work/$t/corpus" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 \
      >"$work/$t/log" 2>&1; then
    echo "fuzz $t: ok ($(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$' || echo '?') executions)"
  else
    echo "fuzz $t: FAILED"
    tail -n 60 "$work/$t/log"
    for a in "$work/$t/artifacts/"*; do
      [ -e "$a" ] && echo "artifact $(basename "$a"): $(base64 -w0 "$a" | head -c 2000)"
    done
    return 1
  fi
}

failed=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ "$failed" -eq 0 ] || { echo "fuzz: a target failed (see above)"; exit 1; }
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a crash"
