#!/usr/bin/env bash
# Build Switchyard and run a blue/green demo on loopback:
#   - three demo backends (examples/demo_backend.rs): blue-1 on :9001, blue-2 on :9002,
#     green-1 on :9101;
#   - Switchyard proxying 127.0.0.1:8080 to upstream "jobs-api" (blue weight 100, green 0,
#     passive health max_fails 3 / fail_timeout 10s, active health check on /health), with
#     its control API on 127.0.0.1:9901 and an admin token printed below;
#   - copy-paste commands: traffic, drain, canary, verified flip, status;
#   - when PostgreSQL server binaries are installed: a primary (:5433) and a streaming
#     replica (:5434) in a temporary directory, and Switchyard's Postgres router for them on
#     127.0.0.1:6432 (reads to the replica, writes to the primary, failover), with psql,
#     switchover and kill-the-primary commands.
# The config is target/demo/switchyard.toml: edit it while the demo runs and it applies live.
# Ctrl-C (or SIGTERM) stops Switchyard and the backends.
#
# GREEN_STATUS=500 scripts/demo.sh starts green answering 500 (its /health still says 200),
# so the flip in step 4 fails its verification and rolls back to blue by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=target/demo
proxy_port=8080
control_port=9901
green_status=${GREEN_STATUS:-200}

scripts/install-deps.sh
cargo build --release --bin switchyard --example demo_backend
bin=target/release/switchyard
backend_bin=target/release/examples/demo_backend

# Something already answering on a port we need makes the demo confusing: refuse early.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
pg_ports=()
if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then pg_ports=(5433 5434 6432); fi
for port in $proxy_port $control_port 9001 9002 9101 "${pg_ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port on 127.0.0.1 is in use (another demo still running?)" >&2
    exit 1
  fi
done

pids=()
pgdir=""
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ -n "$pgdir" ]; then
    for node in replica primary; do
      [ -f "$pgdir/$node/postmaster.pid" ] && as_pg "$pg_bin/pg_ctl" -D "$pgdir/$node" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$pgdir"
  fi
}
# PostgreSQL refuses to run as root: its programs run as the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_until DESCRIPTION COMMAND...: retry COMMAND for up to 30 s.
wait_until() {
  local what=$1 deadline=$((SECONDS + 30))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: timed out waiting for $what" >&2
      exit 1
    fi
    sleep 0.1
  done
}

mkdir -p "$demo"
start_backend() { # NAME PORT [STATUS]
  "$backend_bin" --name "$1" --port "$2" --status "${3:-200}" >"$demo/$1.log" 2>&1 &
  pids+=($!)
  wait_until "backend $1 on :$2" grep -q "listening on" "$demo/$1.log"
}
start_backend blue-1 9001
start_backend blue-2 9002
start_backend green-1 9101 "$green_status"

pg_password=demo-pg-pw
pg_toml=""
if [ ${#pg_ports[@]} -gt 0 ]; then
  pgdir=$(mktemp -d /tmp/switchyard-demo-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdir"
  printf %s "$pg_password" >"$pgdir/pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdir/pwfile"
  as_pg "$pg_bin/initdb" -D "$pgdir/primary" -U postgres --no-sync --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$pgdir/pwfile" >"$pgdir/initdb.log"
  as_pg sh -c "cat >>'$pgdir/primary/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = 5433
unix_socket_directories = '$pgdir'
wal_level = replica
max_wal_senders = 10
cluster_name = 'primary'
CONF
  as_pg sh -c "printf 'local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n' >'$pgdir/primary/pg_hba.conf'"
  as_pg "$pg_bin/pg_ctl" -D "$pgdir/primary" -l "$pgdir/primary.log" -w start >/dev/null
  as_pg env PGPASSWORD="$pg_password" "$pg_bin/pg_basebackup" -h 127.0.0.1 -p 5433 -U postgres \
    -D "$pgdir/replica" -R -X stream -c fast
  as_pg sh -c "printf \"port = 5434\ncluster_name = 'replica'\n\" >>'$pgdir/replica/postgresql.conf'"
  as_pg "$pg_bin/pg_ctl" -D "$pgdir/replica" -l "$pgdir/replica.log" -w start >/dev/null
  as_pg "$pg_bin/psql" -h "$pgdir" -p 5433 -U postgres -qc "create table jobs (id serial primary key, name text)"
  pg_toml=$(cat <<TOML

[[postgres.clusters]]
name = "jobs-db"
listen = "127.0.0.1:6432"
nodes = [{ addr = "127.0.0.1:5433", role = "primary" }, { addr = "127.0.0.1:5434", role = "replica" }]
users = [{ name = "postgres", password = "$pg_password" }]
routing = { read_write_split = true, read_your_writes = true }
TOML
)
fi

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat >"$demo/switchyard.toml" <<TOML
# Demo config: edit me while Switchyard runs, the change is applied live.
[control]
listen = "127.0.0.1:$control_port"
audit_log = "audit.jsonl"

[[control.tokens]]
name = "demo-admin"
role = "admin"
sha256 = "$hash"

[[http.listeners]]
name = "public"
addr = "127.0.0.1:$proxy_port"

[[http.routes]]
host = "*"
path_prefix = "/"
upstream = "jobs-api"

[http.upstreams.jobs-api]
balance = "least_conn"
max_fails = 3
fail_timeout = "10s"
health_check = { path = "/health", interval = "2s", timeout = "1s", rise = 2, fall = 3 }

[http.upstreams.jobs-api.pools.blue]
weight = 100
backends = ["127.0.0.1:9001", "127.0.0.1:9002"]

[http.upstreams.jobs-api.pools.green]
weight = 0
backends = ["127.0.0.1:9101"]
$pg_toml
TOML

"$bin" run --config "$demo/switchyard.toml" &
pids+=($!)
switchyard=$!
wait_until "the control API on :$control_port" curl -fsS "127.0.0.1:$control_port/health"
wait_until "the proxy on :$proxy_port" curl -fsS "127.0.0.1:$proxy_port/"

api="localhost:$control_port"
# shellcheck disable=SC2016 # printed for the reader's shell, where $TOKEN is set
auth='-H "Authorization: Bearer $TOKEN"'
cat <<MSG

Switchyard demo: proxy on 127.0.0.1:$proxy_port, control API on 127.0.0.1:$control_port
  backends:  blue-1 :9001, blue-2 :9002 (pool blue, weight 100); green-1 :9101 (pool green, weight 0)
  config:    $demo/switchyard.toml   (edit it: changes apply live)
  audit log: $demo/audit.jsonl       backend logs: $demo/*.log
  token:     $token   (role admin)

In another terminal:
  export TOKEN=$token

  # 1. Traffic goes to blue, least-connections over both replicas:
  for i in 1 2 3 4; do curl -s localhost:$proxy_port/jobs/\$i; done

  # 2. Drain blue-1: no new requests go to it (in-flight ones finish); then put it back.
  curl -s -X POST $auth $api/v1/upstreams/jobs-api/backends/127.0.0.1%3A9001/drain
  for i in 1 2 3 4; do curl -s localhost:$proxy_port/; done
  curl -s -X POST $auth $api/v1/upstreams/jobs-api/backends/127.0.0.1%3A9001/enable

  # 3. Canary: 10% of requests to green.
  curl -s -X POST $auth -d '{"blue": 90, "green": 10}' $api/v1/upstreams/jobs-api/weights
  for i in \$(seq 100); do curl -s localhost:$proxy_port/ | grep -o '"backend":"[^"]*"'; done | sort | uniq -c

  # 4. Flip everything to green, verified over 20 s (rolls back by itself if green errs),
  #    send it traffic, and watch the verdict go from "verifying" to "verified":
  curl -s -X POST $auth -d '{"to": "green", "verify": {"window": "20s", "min_requests": 20}}' $api/v1/upstreams/jobs-api/flip
  for i in \$(seq 50); do curl -s -o /dev/null -w '%{http_code} ' localhost:$proxy_port/; done; echo
  curl -s $auth $api/v1/upstreams/jobs-api/flip
  curl -s $auth $api/v1/status

  # 5. What changed, and who did it:
  curl -s $auth $api/v1/config/history
  tail -n 5 $demo/audit.jsonl

(GREEN_STATUS=500 scripts/demo.sh runs a broken green: step 4 then rolls back to blue.)
MSG
if [ -n "$pgdir" ]; then
  cat <<MSG
Postgres: Switchyard on 127.0.0.1:6432 in front of a primary (:5433) and a replica (:5434)
  (data in $pgdir, removed on exit; user postgres, password $pg_password)

  export PGHOST=127.0.0.1 PGPORT=6432 PGUSER=postgres PGPASSWORD=$pg_password
  # 6. Reads go to the replica (port 5434), writes to the primary (5433), and a client
  #    reads its own writes:
  psql -c "select current_setting('port')"
  psql -c "insert into jobs (name) values ('build') returning id, current_setting('port')"
  # 7. A planned switchover to the replica (no client error, no lost write), then see it:
  curl -s -X POST $auth -d '{"to": "127.0.0.1:5434"}' $api/v1/clusters/jobs-db/switchover
  curl -s $auth $api/v1/status | grep -o '"fenced": *"[^"]*"'
  #    (or, instead of 7, crash the primary and watch the failover:
  #     kill -9 \$(head -n 1 $pgdir/primary/postmaster.pid); sleep 2; psql -c "insert into jobs (name) values ('after')")

MSG
fi
cat <<MSG
Ctrl-C stops Switchyard and the backends.

MSG
# Not exec: the trap above must outlive Switchyard to stop the backends it started.
wait "$switchyard"
