#!/usr/bin/env bash
# Side-by-side Postgres pooler benchmark on loopback: Switchyard vs PgBouncer vs direct.
#
# One PostgreSQL primary (initdb in a temporary directory, as the `postgres` user, fsync off,
# SCRAM logins over TCP), `pgbench -i` at scale $SCALE, and two poolers in front of it, both
# in transaction pooling with the same server pool size ($POOL) and SCRAM client auth:
#   switchyard  release build, one cluster, pool_mode = "transaction", pool.max_size = $POOL,
#               routing.read_write_split = false (there are no replicas: nothing to split,
#               and PgBouncer does not classify statements either)
#   pgbouncer   Debian package, pool_mode = transaction, default_pool_size = $POOL,
#               max_prepared_statements = 100 for -M prepared (PgBouncer >= 1.21; older
#               ones, like Debian 12's 1.18, do not support -M prepared in transaction mode
#               and that row says so)
#   direct      pgbench straight at PostgreSQL, as the ceiling
# pgbench runs the select-only script (-S) and the default TPC-B-like script, with
# -M simple, extended and prepared, at each client count in $CLIENTS; for each row the three
# targets run one after the other (order rotated per row) and the table prints tps and
# average latency of each, the ratio Switchyard / PgBouncer, and each pooler's CPU time per
# transaction (user + system, from /proc, in µs: what the pooler takes from cores it
# shares with pgbench and PostgreSQL; steadier under a noisy load than tps). The load
# average is printed before and after.
#
# Everything listens on 127.0.0.1 ports picked free by the script, every run is bounded by
# `timeout`, and everything started is stopped on exit. The machine's cores are shared by
# pgbench, the pooler under test and PostgreSQL: the figures compare poolers under the same
# squeeze, not any pooler's capacity on dedicated cores.
#
# Knobs (environment): DURATION (5, seconds per run), CLIENTS ("1 10 50"), MODES ("simple
# extended prepared"), SCRIPTS ("select tpcb"), SCALE (10), POOL (20), OUT
# (target/bench-pg/<time>: pgbench outputs, configs and logs are kept there),
# SPLIT (off, on or classify: see the Switchyard config below), SWITCHYARD_BIN (a
# switchyard binary to run instead of building this tree's release build: to compare
# commits under the same load), SWITCHYARD_PG_WORKERS (the router's
# worker threads; default half the cores), PERF=1
# (record `perf record -g` of Switchyard during each of its runs, into
# $OUT/perf-<script>-<mode>-<clients>.data; needs linux-perf; perf slows the router, so its
# tps and CPU columns do not compare with runs without it), SYSCALLS=1 (count each pooler's
# system calls and context switches with `perf stat` during its runs, and print them per
# transaction under each row: the kernel's share of a pooler's CPU follows them; the counts
# of the common calls are in $OUT/stat-<script>-<mode>-<clients>-<pooler>.csv).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-5}
clients_list=${CLIENTS:-"1 10 50"}
modes=${MODES:-"simple extended prepared"}
scripts=${SCRIPTS:-"select tpcb"}
scale=${SCALE:-10}
pool=${POOL:-20}
out=${OUT:-target/bench-pg/$(date -u +%Y%m%dT%H%M%SZ)}

# --- tools, directories, ports, cleanup (benches/lib/pg.sh) ------------------------------
. benches/lib/pg.sh
pg_tools
mkdir -p "$out"
out=$(cd "$out" && pwd)
pg_workdir
read -r p_pg p_switchyard p_control p_bouncer p_nothing < <(free_ports 5)

perf=${PERF:-}
syscalls=${SYSCALLS:-}
if [ -n "$perf" ] && ! command -v perf >/dev/null 2>&1; then
  echo "bench: PERF=1 needs perf (apt-get install linux-perf)" >&2
  exit 1
fi

# --- PostgreSQL ---------------------------------------------------------------------------
password=bench-pw-$RANDOM$RANDOM
echo "$password" >"$work/pwfile"
chmod 644 "$work/pwfile"
pg_start_primary "$p_pg" scram-sha-256 "$work/pwfile"
psql_pg -c "create role bench login password '$password'" postgres
psql_pg -c "create database bench owner bench" postgres
PGPASSWORD=$password "$pgbench" -h 127.0.0.1 -p "$p_pg" -U bench -i -s "$scale" -q bench \
  >"$out/pgbench-init.log" 2>&1

# --- Switchyard ---------------------------------------------------------------------------
# SPLIT: off (the default: nothing to split, and PgBouncer does not classify), on (the
# default config: read/write split on, with no replica nothing is classified), classify
# (split on and a replica node where nothing listens: every statement is classified and,
# the replica being down, sent to the primary; what classification costs per transaction).
split_on=false
split_replica=""
case "${SPLIT:-off}" in
  off) ;;
  on) split_on=true ;;
  classify)
    split_on=true
    split_replica=", { addr = \"127.0.0.1:$p_nothing\", role = \"replica\" }"
    ;;
  *) echo "SPLIT must be off, on or classify" >&2; exit 2 ;;
esac
cat >"$out/switchyard.toml" <<CONF
[control]
listen = "127.0.0.1:$p_control"
audit_log = "audit.jsonl"

[[postgres.clusters]]
name = "bench"
listen = "127.0.0.1:$p_switchyard"
pool_mode = "transaction"
nodes = [{ addr = "127.0.0.1:$p_pg", role = "primary" }$split_replica]
users = [{ name = "bench", password_env = "BENCH_PG_PASSWORD" }]
pool = { max_size = $pool }
routing = { read_write_split = $split_on }
CONF
(cd "$out" && BENCH_PG_PASSWORD=$password RUST_LOG=warn exec "$switchyard_bin" \
  run --config "$out/switchyard.toml" >"$out/switchyard.log" 2>&1) &
pids+=($!)
switchyard_pid=$!

# --- PgBouncer ----------------------------------------------------------------------------
prepared_line=""
if printf '%s\n1.20.99\n' "$bouncer_version" | sort -V -C 2>/dev/null; then :; else
  prepared_line="max_prepared_statements = 100"
fi
pg_start_pgbouncer "$p_bouncer" scram-sha-256 "$pool" 1000 "\"bench\" \"$password\"" "$prepared_line"

export PGPASSWORD=$password
wait_pg direct "$p_pg"
wait_pg switchyard "$p_switchyard"
wait_pg pgbouncer "$p_bouncer"

declare -A port=([direct]=$p_pg [switchyard]=$p_switchyard [pgbouncer]=$p_bouncer)
declare -A pooler_pid=([switchyard]=$switchyard_pid [pgbouncer]=$(cat "$work/pgbouncer.pid"))
targets=(switchyard pgbouncer direct)

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One run; prints "tps latency_ms cpu_us_per_transaction" ("-" for what is not known).
run() {
  local target=$1 script=$2 mode=$3 clients=$4 log=$5 flags=() pid=${pooler_pid[$1]:-} before=0 rec=()
  [ "$script" = select ] && flags+=(-S)
  local jobs=$((clients < 2 ? clients : 2))
  if [ -n "$perf" ] && [ "$target" = switchyard ]; then
    perf record -q -g -p "$pid" -o "$out/perf-$script-$mode-$clients.data" >/dev/null 2>&1 &
    rec=($!)
  fi
  local stat=() statfile="$out/stat-$script-$mode-$clients-$target.csv"
  if [ -n "$syscalls" ] && [ -n "$pid" ]; then
    local calls=recvfrom,sendto,read,write,writev,readv,epoll_wait,epoll_pwait,epoll_ctl,futex,sched_yield,poll,ppoll,madvise,mmap,munmap
    perf stat -x, -e raw_syscalls:sys_enter,context-switches \
      -e "$(echo "$calls" | sed 's/\([a-z_]*\)/syscalls:sys_enter_\1/g')" \
      -p "$pid" -o "$statfile" >/dev/null 2>&1 &
    stat=($!)
  fi
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  if PGPASSWORD=$password timeout $((duration + 60)) "$pgbench" -h 127.0.0.1 -p "${port[$target]}" -U bench \
      -n "${flags[@]}" -M "$mode" -c "$clients" -j "$jobs" -T "$duration" bench >"$log" 2>&1; then
    local used=-
    [ -n "$pid" ] && used=$(($(cpu_ticks "$pid") - before))
    if [ ${#stat[@]} -gt 0 ]; then
      kill -INT "${stat[0]}" 2>/dev/null || true
      wait "${stat[0]}" 2>/dev/null || true
    fi
    local sc=- cs=-
    if [ -s "$statfile" ]; then
      sc=$(awk -F, '$3 ~ /sys_enter/ { print $1 }' "$statfile")
      cs=$(awk -F, '$3 ~ /context-switches/ { print $1 }' "$statfile")
    fi
    awk -v used="$used" -v hz="$(getconf CLK_TCK)" -v sc="${sc:--}" -v cs="${cs:--}" '
      /^tps = / { tps = $3 }
      /^latency average = / { lat = $4 }
      /^number of transactions actually processed: / { split($NF, n, "/"); txns = n[1] }
      END {
        cpu = (used == "-" || txns == 0) ? "-" : sprintf("%.1f", used / hz * 1e6 / txns)
        scx = (sc == "-" || sc == "" || txns == 0) ? "-" : sprintf("%.2f", sc / txns)
        csx = (cs == "-" || cs == "" || txns == 0) ? "-" : sprintf("%.2f", cs / txns)
        printf "%.0f %.3f %s %s %s\n", tps, lat, cpu, scx, csx
      }' "$log"
  else
    echo "- - - - -"
  fi
  if [ ${#rec[@]} -gt 0 ]; then
    kill -INT "${rec[0]}" 2>/dev/null || true
    wait "${rec[0]}" 2>/dev/null || true
  fi
}

cpus=$(nproc)
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{ print $3 }'), PgBouncer $bouncer_version, switchyard ${SWITCHYARD_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- dbrouter || echo '+changes')}; $cpus cores; scale $scale, pool $pool, ${duration}s per run; router workers ${SWITCHYARD_PG_WORKERS:-default}" | tee -a "$out/summary.txt"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"
printf '%-7s %-9s %4s | %9s %8s | %9s %8s | %9s %8s | %6s | %8s %8s\n' \
  script mode clients switchyard ms pgbouncer ms direct ms sy/pgb sy_us/tx pgb_us/tx | tee -a "$out/summary.txt"
printf '%s\n' "-------------------------------------------------------------------------------------------------------------------"
row=0
for script in $scripts; do
  for mode in $modes; do
    for clients in $clients_list; do
      declare -A tps=() lat=() cpu=() sc=() cs=()
      # Rotate the order per row, so no target always runs first (or right after a vacuum).
      for i in 0 1 2; do
        t=${targets[$(((i + row) % 3))]}
        read -r tps[$t] lat[$t] cpu[$t] sc[$t] cs[$t] < <(run "$t" "$script" "$mode" "$clients" "$out/$script-$mode-$clients-$t.log")
      done
      row=$((row + 1))
      ratio=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}' if a!='-' and b!='-' and float(b)>0 else '-')" "${tps[switchyard]}" "${tps[pgbouncer]}")
      printf '%-7s %-9s %4s | %9s %8s | %9s %8s | %9s %8s | %6s | %8s %8s\n' "$script" "$mode" "$clients" \
        "${tps[switchyard]}" "${lat[switchyard]}" "${tps[pgbouncer]}" "${lat[pgbouncer]}" \
        "${tps[direct]}" "${lat[direct]}" "$ratio" "${cpu[switchyard]}" "${cpu[pgbouncer]}" | tee -a "$out/summary.txt"
      if [ -n "$syscalls" ]; then
        printf '%27s syscalls/tx: switchyard %s, pgbouncer %s; context switches/tx: switchyard %s, pgbouncer %s\n' "" \
          "${sc[switchyard]}" "${sc[pgbouncer]}" "${cs[switchyard]}" "${cs[pgbouncer]}" | tee -a "$out/summary.txt"
      fi
      unset tps lat cpu sc cs
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"
echo "pgbench outputs, configs and logs: $out"
