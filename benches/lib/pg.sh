# Shared setup of the Postgres benchmarks (benches/pg_compare.sh, benches/pg_conn_memory.sh):
# sourced, not run. It provides
#   pg_tools               PostgreSQL's server binaries ($pgbin, $pgbench), PgBouncer and
#                          python3 (installed from Debian when missing), $switchyard_bin (the
#                          release build of this tree unless SWITCHYARD_BIN names one)
#   pg_workdir             $work (a temporary directory PostgreSQL and PgBouncer can use),
#                          $as_pg (run as the `postgres` user when we are root), the cleanup
#                          trap: every PID in $pids is killed and the primary stopped on exit
#   free_ports N           N free loopback ports, on one line
#   pg_start_primary PORT AUTH [PWFILE]
#                          initdb (host auth AUTH: trust or scram-sha-256, PWFILE the
#                          superuser's password) and start it on 127.0.0.1:PORT
#   psql_pg ARGS...        psql to the primary as the superuser, over its socket
#   pg_start_pgbouncer PORT AUTH POOL MAX_CLIENTS USERLIST [EXTRA]
#                          PgBouncer in transaction pooling in front of database `bench`
#   wait_pg NAME PORT      wait (at most 30 s) until `select 1` works as user `bench`
#                          (PGPASSWORD as the caller set it)
# and expects the caller to have `cd`ed to the repository and set $out (an existing
# directory for configs and logs).

. benches/lib/common.sh

pg_tools() {
  pgbin=${SWITCHYARD_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
  [ -x "$pgbin/initdb" ] || { echo "bench: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
  local need=()
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  install_missing "${need[@]}"
  PATH=$PATH:/usr/sbin
  switchyard_bin=${SWITCHYARD_BIN:+$(realpath "$SWITCHYARD_BIN")}
  if [ -z "$switchyard_bin" ]; then
    cargo build --release --bin switchyard
    switchyard_bin=$(pwd)/target/release/switchyard
  fi
  pgbench=$pgbin/pgbench
  [ -x "$pgbench" ] || pgbench=pgbench
  bouncer_version=$(pgbouncer --version | head -1 | awk '{ print $2 }')
}

pg_workdir() {
  work=$(mktemp -d /tmp/switchyard-pgbench-XXXXXX)
  # PostgreSQL and PgBouncer refuse to run as root: they run as `postgres` when we are root.
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$work"
    as_pg=(runuser -u postgres --)
  fi
  pids=()
  trap pg_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

pg_cleanup() {
  trap - EXIT INT TERM
  kill_pids
  [ -f "$work/data/postmaster.pid" ] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}


pg_start_primary() {
  local port=$1 auth=$2 pwfile=${3:-}
  local pw=()
  [ -n "$pwfile" ] && pw=(--pwfile="$pwfile")
  "${as_pg[@]}" "$pgbin/initdb" -D "$work/data" -U postgres --no-sync --no-locale -E UTF8 \
    --auth-local=trust --auth-host="$auth" "${pw[@]}" >"$out/initdb.log"
  cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = '128MB'
password_encryption = 'scram-sha-256'
CONF
  pg_port=$port
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
}

psql_pg() { "${as_pg[@]}" "$pgbin/psql" -h "$work" -p "$pg_port" -U postgres -XAtq -v ON_ERROR_STOP=1 "$@"; }

pg_start_pgbouncer() {
  local port=$1 auth=$2 pool=$3 max_clients=$4 userlist=$5 extra=${6:-}
  printf '%s\n' "$userlist" >"$work/userlist.txt"
  cat >"$work/pgbouncer.ini" <<CONF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = $auth
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = $max_clients
server_tls_sslmode = prefer
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
$extra
CONF
  [ "$(id -u)" -eq 0 ] && chown postgres: "$work/userlist.txt" "$work/pgbouncer.ini"
  # runuser resets the soft open-file limit to 1024: PgBouncer gets ours (up to its hard one).
  "${as_pg[@]}" sh -c 'ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec pgbouncer "$2"' \
    sh "$(ulimit -n)" "$work/pgbouncer.ini" >"$out/pgbouncer.stdout" 2>&1 &
  pids+=($!)
  cp "$work/pgbouncer.ini" "$out/"
}

wait_pg() {
  local deadline=$((SECONDS + 30))
  until PGCONNECT_TIMEOUT=2 "$pgbin/psql" -h 127.0.0.1 -p "$2" -U bench -XAtq -c 'select 1' bench >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "bench: $1 on :$2 does not answer; logs are in $out and $work" >&2
      cat "$out/switchyard.log" "$work/pgbouncer.log" 2>/dev/null | tail -20 >&2
      exit 1
    fi
    sleep 0.2
  done
}
