#!/usr/bin/env bash
# Release build: a stripped `switchyard` to ship, with its symbols and debug info kept apart.
#
#   scripts/release.sh [OUT_DIR]            # cargo build --release, then split; default target/dist
#   scripts/release.sh --split BINARY OUT_DIR   # only split an already built binary
#
# OUT_DIR gets:
#   switchyard        stripped of every symbol and debug section, with a .gnu_debuglink
#                     naming switchyard.debug (and its CRC), so gdb, perf and addr2line
#                     find the symbols when the file is beside the binary or in
#                     /usr/lib/debug/.build-id/ (see README "Deploy")
#   switchyard.debug  the symbols and debug info (DWARF sections compressed)
#   SHA256SUMS
# The release profile keeps line tables (`debug = 1` in Cargo.toml) for profiling; this
# script is what takes them out of the shipped binary. SWITCHYARD_GIT_COMMIT, when set, is
# what `switchyard --version` prints (else `git rev-parse HEAD`).
set -euo pipefail
cd "$(dirname "$0")/.."

split() {
  local bin=$1 out=$2
  command -v objcopy >/dev/null || { echo "objcopy (binutils) is needed" >&2; exit 1; }
  mkdir -p "$out"
  local name
  name=$(basename "$bin")
  objcopy --only-keep-debug --compress-debug-sections=zlib "$bin" "$out/$name.debug"
  # Strip into a temporary name, then add the link from inside OUT_DIR (objcopy records the
  # file name given to it, and computes the CRC of that file).
  objcopy --strip-all "$bin" "$out/$name.tmp"
  (cd "$out" && objcopy --add-gnu-debuglink="$name.debug" "$name.tmp" "$name" && rm "$name.tmp")
  chmod 0755 "$out/$name"
  (cd "$out" && sha256sum "$name" "$name.debug" >SHA256SUMS)
  "$out/$name" --version
  ls -l "$bin" "$out/$name" "$out/$name.debug" | awk '{ printf "%12d  %s\n", $5, $NF }'
}

if [ "${1:-}" = "--split" ]; then
  [ $# -eq 3 ] || { echo "usage: $0 --split BINARY OUT_DIR" >&2; exit 2; }
  split "$2" "$3"
  exit 0
fi

out=${1:-${CARGO_TARGET_DIR:-target}/dist}
cargo build --release --locked --bin switchyard
split "${CARGO_TARGET_DIR:-target}/release/switchyard" "$out"
