#!/usr/bin/env bash
# Run real Postgres clients' own test suites through Switchyard (issue 4):
#   - tokio-postgres: the integration tests shipped in its .crate (tests/test), taken from
#     cargo's registry cache after `cargo fetch` of the version in our Cargo.lock;
#   - asyncpg: the tests/ directory of its PyPI sdist, run with pytest against the installed
#     wheel of the same version (psycopg's sdist ships no tests).
# Each suite runs in every mode of $MODES (default "direct session transaction"):
#   direct       straight to PostgreSQL (the baseline: what fails here is not the router's);
#   session      through `switchyard` with pool_mode = "session";
#   transaction  through `switchyard` with pool_mode = "transaction" (the default mode);
#   pgbouncer-session, pgbouncer-transaction
#                through PgBouncer (/usr/sbin/pgbouncer, run as the postgres user) with that
#                pool_mode, the same pool size and users, for the same table side by side.
# asyncpg's test_listeners runs as a pytest run of its own (in PgBouncer's transaction mode
# it ends pytest with an internal error, which stopped the rest of the suite).
# Each suite in each mode gets a fresh PostgreSQL primary (initdb in $WORK, a free port;
# settings as tests/support/pg.rs, plus the roles and extensions tokio-postgres's docker
# setup creates) and, unless direct, `switchyard` in front of it on another free port.
# Nothing fetched lands in the repository: downloads, builds and logs go to $WORK
# (default: a new directory under /tmp, kept for inspection and printed at the end).
#
# Usage: scripts/client-suites.sh [tokio-postgres] [asyncpg]     (default: both)
# Environment: MODES, WORK, SWITCHYARD_BIN (default: cargo build --bin switchyard),
#   PG_CONF_EXTRA (more postgresql.conf lines, e.g. "log_statement = all" for a trace),
#   ASYNCPG_VERSION (0.32.0), PYTEST_ARGS (extra, e.g. "-k test_prepare"),
#   CARGO_TARGET_DIR for the tokio-postgres build (default: $WORK/../switchyard-suites-target).
# Results: $WORK/results/<suite>-<mode>.{log,summary,failed}; a table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(tokio-postgres asyncpg)
modes=(${MODES:-direct session transaction})
asyncpg_version=${ASYNCPG_VERSION:-0.32.0}
work=${WORK:-$(mktemp -d /tmp/switchyard-suites.XXXXXX)}
mkdir -p "$work/results"
# mktemp makes it 0700: the servers run as `postgres` and must reach their directories.
chmod 755 "$work"
results=$work/results
pg_password=suites-superuser-pw
user_password=password # what tokio-postgres's tests use for pass_user, md5_user, scram_user

log() { echo "client-suites: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# --- what the machine needs -------------------------------------------------------------
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
pg_bin=${SWITCHYARD_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

if [ -z "${SWITCHYARD_BIN:-}" ]; then
  cargo build --bin switchyard
  SWITCHYARD_BIN=$repo/target/debug/switchyard
fi

# --- processes we start, stopped on exit ------------------------------------------------
pids=()
cleanup() {
  trap - EXIT INT TERM
  if [ -n "${pg_pid:-}" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" stop -s -m immediate -D "$pgdir/data" >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_until SECONDS DESCRIPTION COMMAND...
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
    sleep 0.1
  done
}

# --- PostgreSQL -------------------------------------------------------------------------
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "no postgres user to run PostgreSQL as"
  as_pg=(runuser -u postgres --)
fi
pg_version=$("$pg_bin/postgres" --version)
pg_pid=""
pg_port=""
pgdir=""
psql_su() { psql -X -q -v ON_ERROR_STOP=1 -h "$pgdir" -p "$pg_port" -U postgres -d postgres "$@"; }

# start_postgres NAME: a fresh primary in $work/pg-NAME (each suite and mode gets its own,
# so what one run leaves behind, databases, extensions, roles, cannot fail the next).
start_postgres() {
  pgdir=$work/pg-$1
  rm -rf "$pgdir"
  mkdir -p "$pgdir"
  [ ${#as_pg[@]} -eq 0 ] || chown postgres: "$pgdir"
  pg_port=$(free_port)
  printf %s "$pg_password" >"$pgdir/pwfile"
  [ ${#as_pg[@]} -eq 0 ] || chown postgres: "$pgdir/pwfile"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pgdir/data" -U postgres --no-sync --no-locale -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pgdir/pwfile" >"$pgdir/initdb.log"
  # As tests/support/pg.rs, plus what tokio-postgres's docker setup has: postgres is
  # trusted over TCP (its tests connect without a password), md5_user logs in with md5.
  cat >>"$pgdir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pgdir'
fsync = off
full_page_writes = off
max_connections = 200
shared_buffers = '32MB'
password_encryption = 'scram-sha-256'
max_prepared_transactions = 10
logging_collector = off
${PG_CONF_EXTRA:-}
CONF
  cat >"$pgdir/data/pg_hba.conf" <<HBA
local all all trust
host all postgres 127.0.0.1/32 trust
host all md5_user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
HBA
  "${as_pg[@]}" "$pg_bin/postgres" -D "$pgdir/data" >"$pgdir/postgres.log" 2>&1 &
  pg_pid=$!
  pids+=($pg_pid)
  wait_until 30 "PostgreSQL on :$pg_port" "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"
  psql_su <<SQL
ALTER ROLE postgres PASSWORD '$pg_password';
SET password_encryption TO 'md5';
CREATE ROLE md5_user PASSWORD '$user_password' LOGIN;
SET password_encryption TO 'scram-sha-256';
CREATE ROLE pass_user PASSWORD '$user_password' LOGIN;
CREATE ROLE scram_user PASSWORD '$user_password' LOGIN;
CREATE ROLE ssl_user LOGIN;
SQL
  log "PostgreSQL ($pg_version) on 127.0.0.1:$pg_port, data in $pgdir/data"
}
stop_postgres() {
  [ -n "$pg_pid" ] || return 0
  # Fast shutdown (runuser's pid is ours, the postmaster's is not: pg_ctl signals it).
  "${as_pg[@]}" "$pg_bin/pg_ctl" stop -s -m fast -D "$pgdir/data" >/dev/null 2>&1 ||
    kill "$pg_pid" 2>/dev/null || true
  wait "$pg_pid" 2>/dev/null || true
  pg_pid=""
}

# --- PgBouncer --------------------------------------------------------------------------
pgb_bin=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
# start_pgbouncer POOL_MODE: PgBouncer in front of the primary, on $sy_port (the port the
# suite connects to), with the users and authentication methods Switchyard gets.
start_pgbouncer() {
  local mode=$1 dir=$work/pgbouncer-$1
  [ -x "$pgb_bin" ] || die "no PgBouncer at $pgb_bin (apt-get install pgbouncer)"
  rm -rf "$dir"
  mkdir -p "$dir"
  sy_port=$(free_port)
  cat >"$dir/userlist.txt" <<USERS
"postgres" "$pg_password"
"pass_user" "$user_password"
"md5_user" "$user_password"
"scram_user" "$user_password"
USERS
  cat >"$dir/hba.conf" <<HBA
host all postgres 127.0.0.1/32 trust
host all md5_user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
HBA
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $sy_port
unix_socket_dir =
auth_type = hba
auth_hba_file = $dir/hba.conf
auth_file = $dir/userlist.txt
pool_mode = $mode
max_client_conn = 500
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  [ ${#as_pg[@]} -eq 0 ] || chown -R postgres: "$dir"
  "${as_pg[@]}" "$pgb_bin" "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
  sy_pid=$!
  pids+=($sy_pid)
  wait_until 30 "pgbouncer ($mode) on :$sy_port" \
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$sy_port" -U postgres
  log "pgbouncer ($("$pgb_bin" --version | head -1), $mode) on 127.0.0.1:$sy_port, log $dir/pgbouncer.log"
}

# --- Switchyard -------------------------------------------------------------------------
sy_pid=""
sy_port=""
# start_switchyard MODE: Switchyard in front of the primary, pool_mode MODE. Users as the
# server has them; pass_user gets SCRAM (the router offers no cleartext password).
start_switchyard() {
  local mode=$1 dir=$work/switchyard-$1
  mkdir -p "$dir"
  sy_port=$(free_port)
  cat >"$dir/switchyard.toml" <<TOML
[control]
listen = "127.0.0.1:$(free_port)"
audit_log = "audit.jsonl"

[[postgres.clusters]]
name = "suites"
listen = "127.0.0.1:$sy_port"
pool_mode = "$mode"
nodes = [{ addr = "127.0.0.1:$pg_port", role = "primary" }]
users = [
  { name = "postgres", password = "$pg_password", client_auth = "trust" },
  { name = "pass_user", password = "$user_password", client_auth = "scram-sha-256" },
  { name = "md5_user", password = "$user_password", client_auth = "md5" },
  { name = "scram_user", password = "$user_password", client_auth = "scram-sha-256" },
]
pool = { max_size = 40, checkout_timeout = "30s" }
TOML
  "$SWITCHYARD_BIN" run --config "$dir/switchyard.toml" >"$dir/switchyard.log" 2>&1 &
  sy_pid=$!
  pids+=($sy_pid)
  wait_until 30 "switchyard ($mode) on :$sy_port" \
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$sy_port" -U postgres
  log "switchyard ($mode) on 127.0.0.1:$sy_port, log $dir/switchyard.log"
}
stop_switchyard() {
  [ -n "$sy_pid" ] || return 0
  # PgBouncer runs under runuser: its own pid is in its pidfile.
  local pidfile pid
  for pidfile in "$work"/pgbouncer-*/pgbouncer.pid; do
    pid=$(cat "$pidfile" 2>/dev/null) && kill "$pid" 2>/dev/null || true
  done
  kill "$sy_pid" 2>/dev/null || true
  wait "$sy_pid" 2>/dev/null || true
  sy_pid=""
}

# port_for MODE: where a suite in MODE connects (the pooler's port unless direct).
port_for() {
  if [ "$1" = direct ]; then
    echo "$pg_port"
  else
    echo "$sy_port"
  fi
}

# --- tokio-postgres ---------------------------------------------------------------------
tp_version=$(awk '/^name = "tokio-postgres"$/ { getline; gsub(/"/, "", $3); print $3 }' \
  "$repo/Cargo.lock")
tp_src=""
prepare_tokio_postgres() {
  [ -n "$tp_src" ] && return 0
  # Fetch the .crate with cargo itself (an ordinary client of crates.io), then unpack the
  # cached archive: it holds the crate's tests/ and its Cargo.lock.
  local fetch=$work/fetch-tokio-postgres
  mkdir -p "$fetch/src"
  cat >"$fetch/Cargo.toml" <<TOML
[package]
name = "fetch-tokio-postgres"
version = "0.0.0"
edition = "2021"
[dependencies]
tokio-postgres = "=$tp_version"
[workspace]
TOML
  : >"$fetch/src/lib.rs"
  (cd "$fetch" && cargo fetch -q)
  local archive
  archive=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"tokio-postgres-$tp_version.crate" | head -1)
  [ -f "$archive" ] || die "tokio-postgres-$tp_version.crate not in cargo's cache"
  rm -rf "$work/tokio-postgres-$tp_version"
  tar xzf "$archive" -C "$work"
  tp_src=$work/tokio-postgres-$tp_version
  # Its own workspace, so cargo does not look for a parent one.
  printf '\n[workspace]\n' >>"$tp_src/Cargo.toml"
}

tp_features=runtime,array-impls,with-bit-vec-0_6,with-bit-vec-0_7,with-bit-vec-0_8,with-bit-vec-0_9,with-chrono-0_4,with-eui48-1,with-geo-types-0_6,with-geo-types-0_7,with-jiff-0_1,with-jiff-0_2,with-serde_json-1,with-smol_str-01,with-time-0_2,with-time-0_3,with-uuid-0_8,with-uuid-1

run_tokio_postgres() { # MODE PORT
  local mode=$1 port=$2 out=$results/tokio-postgres-$1
  prepare_tokio_postgres
  # A copy per mode, its connection strings pointed at PORT (they say 5433; parse.rs only
  # parses URLs with that port, so it keeps them).
  local dir=$work/tokio-postgres-run
  rm -rf "$dir"
  cp -r "$tp_src" "$dir"
  find "$dir/tests" -name '*.rs' ! -name parse.rs -exec sed -i \
    -e "s/port=5433/port=$port/g" -e "s/port=5432,5433/port=5432,$port/g" \
    -e "s/127\.0\.0\.1:5433/127.0.0.1:$port/g" {} +
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(dirname "$work")/switchyard-suites-target}
  log "tokio-postgres $tp_version ($mode, port $port): building and running tests/test"
  (cd "$dir" && cargo test --locked --features "$tp_features" --no-run -q) >"$out.build.log" 2>&1 ||
    die "tokio-postgres tests did not build: $out.build.log"
  (cd "$dir" && timeout 900 cargo test --locked --features "$tp_features" --test test -- \
    --test-threads=2) >"$out.log" 2>&1 || true
  local passed failed ignored
  passed=$(grep -cE '^test .* \.\.\. ok$' "$out.log" || true)
  failed=$(grep -cE '^test .* \.\.\. FAILED$' "$out.log" || true)
  ignored=$(grep -cE '^test .* \.\.\. ignored' "$out.log" || true)
  grep -E '^test .* \.\.\. FAILED$' "$out.log" | awk '{print $2}' | sort >"$out.failed" || true
  if ! grep -q '^test result:' "$out.log"; then
    echo "(suite did not finish: see $out.log)" >>"$out.failed"
  fi
  echo "tokio-postgres $mode: $passed passed, $failed failed, $ignored skipped" | tee "$out.summary"
}

# --- asyncpg ----------------------------------------------------------------------------
venv=""
prepare_asyncpg() {
  [ -n "$venv" ] && return 0
  venv=$work/venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "asyncpg==$asyncpg_version" pytest pytest-timeout distro
  # The tests come from the sdist; the package under test is the installed wheel (the
  # sdist's asyncpg/ is uncompiled, so the tests run from a directory without it).
  "$venv/bin/pip" download -q --no-binary :all: --no-deps "asyncpg==$asyncpg_version" \
    -d "$work/sdist"
  rm -rf "$work/asyncpg-$asyncpg_version" "$work/asyncpg-tests"
  tar xzf "$work/sdist/asyncpg-$asyncpg_version.tar.gz" -C "$work"
  mkdir -p "$work/asyncpg-tests"
  cp -r "$work/asyncpg-$asyncpg_version/tests" "$work/asyncpg-tests/"
}

run_asyncpg() { # MODE PORT
  local mode=$1 port=$2 out=$results/asyncpg-$1
  prepare_asyncpg
  rm -f "$out.log" "$out".*.xml
  log "asyncpg $asyncpg_version ($mode, port $port): pytest tests/"
  # PGHOST makes asyncpg's test base use the running server ("RunningCluster") instead of
  # starting its own. Tests that need to edit pg_hba.conf or start clusters then skip or
  # fail the same way in every mode (see the direct run).
  # Two pytest runs: test_listeners apart (see the top), then everything else.
  local part args
  for part in listeners rest; do
    case $part in
    listeners) args=(tests/test_listeners.py) ;;
    rest) args=(tests --ignore=tests/test_listeners.py) ;;
    esac
    (cd "$work/asyncpg-tests" &&
      PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGPASSWORD=$pg_password \
        PGDATABASE=postgres PGINSTALLATION=$pg_bin \
        timeout 1800 "$venv/bin/python" -m pytest "${args[@]}" -p no:cacheprovider \
        --timeout=120 -q -rfE --junitxml="$out.$part.xml" ${PYTEST_ARGS:-}) \
      >>"$out.log" 2>&1 || true
  done
  "$venv/bin/python" - "$mode" "$out.listeners.xml" "$out.rest.xml" >"$out.summary" \
    2>"$out.failed.tmp" <<'PY' || true
import os, sys, xml.etree.ElementTree as ET
mode, paths = sys.argv[1], sys.argv[2:]
passed = failed = skipped = 0
cases = [c for p in paths if os.path.exists(p) for c in ET.parse(p).getroot().iter("testcase")]
for case in cases:
    name = f'{case.get("classname")}.{case.get("name")}'
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
        print(name, file=sys.stderr)
    elif case.find("skipped") is not None:
        skipped += 1
    else:
        passed += 1
print(f"asyncpg {mode}: {passed} passed, {failed} failed, {skipped} skipped")
PY
  sort "$out.failed.tmp" >"$out.failed" && rm -f "$out.failed.tmp"
  [ -s "$out.summary" ] || echo "asyncpg $mode: (no results: see $out.log)" >"$out.summary"
  cat "$out.summary"
}

# --- run --------------------------------------------------------------------------------
for mode in "${modes[@]}"; do
  case $mode in
  direct | session | transaction | pgbouncer-session | pgbouncer-transaction) ;;
  *) die "unknown mode $mode (direct, session, transaction, pgbouncer-session, pgbouncer-transaction)" ;;
  esac
  for suite in "${suites[@]}"; do
    start_postgres "$suite-$mode"
    case $mode in
    direct) ;;
    pgbouncer-*) start_pgbouncer "${mode#pgbouncer-}" ;;
    *) start_switchyard "$mode" ;;
    esac
    port=$(port_for "$mode")
    case $suite in
    tokio-postgres)
      # The extensions tokio-postgres's docker setup creates (asyncpg creates its own).
      psql_su -c 'CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;'
      run_tokio_postgres "$mode" "$port"
      ;;
    asyncpg) run_asyncpg "$mode" "$port" ;;
    *) die "unknown suite $suite (tokio-postgres, asyncpg)" ;;
    esac
    stop_switchyard
    stop_postgres
  done
done

echo
echo "== results (tokio-postgres $tp_version, asyncpg $asyncpg_version, $pg_version) =="
for suite in "${suites[@]}"; do
  for mode in "${modes[@]}"; do
    cat "$results/$suite-$mode.summary"
  done
done
for suite in "${suites[@]}"; do
  for mode in "${modes[@]}"; do
    if [ -s "$results/$suite-$mode.failed" ]; then
      echo "-- $suite $mode: failed"
      sed 's/^/   /' "$results/$suite-$mode.failed"
    fi
  done
done
echo "logs: $results"
