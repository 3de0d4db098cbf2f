#!/usr/bin/env bash
# Run every test: installs what a fresh machine lacks, then unit and end-to-end tests, then
# 30 s of every fuzz target on its seed corpus (scripts/fuzz-ci.sh; SWITCHYARD_SKIP_FUZZ=1
# skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-targets
if [ "${SWITCHYARD_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz-ci.sh
fi
