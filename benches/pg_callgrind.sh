#!/usr/bin/env bash
# Instructions per transaction of the Postgres router on fixed pgbench workloads, counted by
# callgrind: the same for the same input however loaded the machine is, so that two builds of
# the router can be compared where CPU time per transaction is too noisy.
#
#   benches/pg_callgrind.sh target/release/switchyard /tmp/switchyard-main ...
#
# One PostgreSQL (a temporary initdb, run as `postgres` when we are root, fsync off) with
# `pgbench -i -s 1`. Then, for each workload and each binary in turn, the router runs under
# `valgrind --tool=callgrind --instr-atstart=no` in transaction pooling (one cluster, no
# replicas, the monitor's checks hourly so they stay out of the count); counting is switched
# on (`callgrind_control -i on`) for exactly one `pgbench -t $TX` run, dumped, then switched on
# again for as long while the router sits idle (its failover watcher and reaper), dumped. The
# table gives the instructions (Ir) of both windows and (run - idle) / transactions.
#
# Knobs: TX (3000 transactions per run), WORKLOADS ("select:simple select:prepared
# tpcb:extended"), CLIENTS (1), SPLIT (classify: see the config below), OUT
# (target/bench-callgrind/<time>: callgrind files, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SWITCHYARD_BIN [SWITCHYARD_BIN...]" >&2; exit 2; }
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  { echo "bench: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
tx=${TX:-3000}
workloads=${WORKLOADS:-"select:simple select:prepared tpcb:extended"}
clients=${CLIENTS:-1}
out=${OUT:-target/bench-callgrind/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" && out=$(cd "$out" && pwd)
pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

tmp=$(mktemp -d /tmp/switchyard-callgrind-XXXXXX)
run_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$tmp"; run_pg=(runuser -u postgres --); fi
router=""
finish() {
  [ -n "$router" ] && kill "$router" 2>/dev/null && wait "$router" 2>/dev/null
  "${run_pg[@]}" "$pg/pg_ctl" -D "$tmp/db" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap finish EXIT

free_ports() { python3 -c 'import socket
s=[socket.socket() for _ in range(4)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*(x.getsockname()[1] for x in s))'; }
read -r db_port router_port control_port nothing_port < <(free_ports)
# SPLIT=classify: a replica node where nothing listens, so that every turn is classified
# (and, the replica being down, sent to the primary); otherwise none, and with no replica
# the router classifies nothing.
replica=""
[ "${SPLIT:-}" = classify ] && replica=", { addr = \"127.0.0.1:$nothing_port\", role = \"replica\" }"

secret=cg-$RANDOM$RANDOM
echo "$secret" >"$tmp/pw" && chmod 644 "$tmp/pw"
"${run_pg[@]}" "$pg/initdb" -D "$tmp/db" -U postgres -A scram-sha-256 --pwfile="$tmp/pw" \
  --no-sync --no-locale -E UTF8 >"$out/initdb.log"
"${run_pg[@]}" "$pg/pg_ctl" -D "$tmp/db" -l "$tmp/db.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $db_port -k $tmp -c fsync=off -c synchronous_commit=off" \
  start >/dev/null
export PGPASSWORD=$secret
"$pg/pgbench" -h 127.0.0.1 -p "$db_port" -U postgres -i -s 1 -q postgres >"$out/init.log" 2>&1

cat >"$out/router.toml" <<TOML
[control]
listen = "127.0.0.1:$control_port"
audit_log = "audit.jsonl"

[[postgres.clusters]]
name = "cg"
listen = "127.0.0.1:$router_port"
pool_mode = "transaction"
nodes = [{ addr = "127.0.0.1:$db_port", role = "primary" }$replica]
users = [{ name = "postgres", password_env = "CG_PASSWORD" }]
failover = { check_interval = "1h" }
TOML

# The Ir total of a callgrind dump file.
ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

printf '%-10s %-16s %-9s %7s | %14s %12s | %10s\n' binary script mode tx "Ir run" "Ir idle" "Ir/tx" |
  tee "$out/summary.txt"
for w in $workloads; do
  script=${w%%:*} mode=${w##*:} flags=()
  [ "$script" = select ] && flags+=(-S)
  for bin in "${bins[@]}"; do
    tag=$(basename "$bin")-$script-$mode
    (cd "$out" && CG_PASSWORD=$secret SWITCHYARD_PG_WORKERS=1 RUST_LOG=warn exec valgrind -q \
      --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/$tag.%p" \
      "$bin" run --config "$out/router.toml" >"$out/$tag.log" 2>&1) &
    router=$!
    until "$pg/psql" -h 127.0.0.1 -p "$router_port" -U postgres -XAtq -c 'select 1' postgres >/dev/null 2>&1; do
      kill -0 "$router" 2>/dev/null || { echo "bench: $bin did not start: $out/$tag.log" >&2; exit 1; }
      sleep 0.5
    done
    vpid=$router # the subshell exec'd valgrind, which runs the tool in the same process
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    started=$SECONDS
    "$pg/pgbench" -h 127.0.0.1 -p "$router_port" -U postgres -n "${flags[@]}" -M "$mode" \
      -c "$clients" -j 1 -t "$tx" postgres >"$out/$tag.pgbench" 2>&1
    took=$((SECONDS - started + 1))
    callgrind_control -d "$vpid" >/dev/null 2>&1
    sleep "$took"
    callgrind_control -d "$vpid" >/dev/null 2>&1
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    kill "$router"; wait "$router" 2>/dev/null || true
    router=""
    done_tx=$(awk '/number of transactions actually processed/ { split($NF, n, "/"); print n[1] }' "$out/$tag.pgbench")
    run_ir=$(ir "$out/$tag.$vpid.1") idle_ir=$(ir "$out/$tag.$vpid.2")
    per_tx=$(awk -v r="$run_ir" -v i="$idle_ir" -v n="$done_tx" 'BEGIN { printf "%.0f", (r - i) / n }')
    printf '%-10s %-16s %-9s %7s | %14s %12s | %10s\n' "$(basename "$bin" | cut -c1-10)" \
      "$script" "$mode" "$done_tx" "$run_ir" "$idle_ir" "$per_tx" | tee -a "$out/summary.txt"
  done
done
echo "files: $out"
