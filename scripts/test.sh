#!/usr/bin/env bash
# Run every test: installs what a fresh machine lacks, then unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-targets
