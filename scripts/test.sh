#!/usr/bin/env bash
# Run every test: installs what a fresh machine lacks, then unit and end-to-end tests, then
# the HTTP proxy's end-to-end tests again with every listener on the hyper HTTP/1 engine
# (`http1 = "hyper"`, docs/HTTP1_PATH.md), then 30 s of every fuzz target on its seed corpus
# (scripts/fuzz-ci.sh; SWITCHYARD_SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-targets
proxy_tests=()
for t in tests/proxy_*.rs; do proxy_tests+=(--test "$(basename "$t" .rs)"); done
SWITCHYARD_TEST_HTTP1=hyper cargo test "${proxy_tests[@]}"
if [ "${SWITCHYARD_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz-ci.sh
fi
