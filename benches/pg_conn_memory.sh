#!/usr/bin/env bash
# Memory per idle Postgres client, side by side: Switchyard vs PgBouncer, in one run.
#
# One PostgreSQL primary (trust auth over TCP, benches/lib/pg.sh) and both poolers in front
# of it in transaction pooling, server pool $POOL, trust client auth. For each pooler in
# turn, a client (python, raw protocol on sockets, in this script; it sends what libpq
# sends at startup: user, database, application_name, client_encoding):
#   1. runs one client (login, `select 1`, Terminate) so the server pool is warm, and reads
#      the pooler's RSS (VmRSS from /proc/PID/status): the baseline;
#   2. opens N clients, each logs in, runs `select 1`, reads its answer and stays idle;
#      reads RSS once it stops growing;
#   3. closes all N (Terminate, then close), waits SETTLE seconds, reads RSS.
# It prints KB of RSS per idle client ((2) - (1)) / N and the RSS after close against the
# baseline. RSS is what the kernel has mapped, so it includes what the allocator keeps after
# a free.
#
# Knobs (environment): N (2000), SETTLE (3, seconds after close), POOL (20), OUT
# (target/bench-pg-mem/<time>), SWITCHYARD_BIN (a switchyard binary to use as is; else this
# tree's release build is built), SWITCHYARD_PG_WORKERS (the router's worker threads),
# TARGETS ("pgbouncer switchyard"), WRAP (a command Switchyard runs under, such as
# `heaptrack`: its RSS is then the wrapper's business, only the profile counts), AT_IDLE (a
# shell command run while the N clients are idle, with $POOLER and $POOLER_PID set: e.g.
# `kill -9 $POOLER_PID` ends a heaptrack run with what is live then reported as leaked).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${N:-2000}
settle=${SETTLE:-3}
pool=${POOL:-20}
targets=${TARGETS:-"pgbouncer switchyard"}
out=${OUT:-target/bench-pg-mem/$(date -u +%Y%m%dT%H%M%SZ)}

. benches/lib/pg.sh
pg_tools
# N client sockets here and as many in each pooler: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((n + 500)) ]; then
  echo "bench: open-file limit $(ulimit -n) is too low for N=$n" >&2
  exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
pg_workdir
read -r p_pg p_switchyard p_control p_bouncer < <(free_ports 4)

pg_start_primary "$p_pg" trust
psql_pg -c "create role bench login" postgres
psql_pg -c "create database bench owner bench" postgres

cat >"$out/switchyard.toml" <<CONF
[control]
listen = "127.0.0.1:$p_control"
audit_log = "audit.jsonl"

[[postgres.clusters]]
name = "bench"
listen = "127.0.0.1:$p_switchyard"
pool_mode = "transaction"
max_client_conn = $((n + 100))
nodes = [{ addr = "127.0.0.1:$p_pg", role = "primary" }]
users = [{ name = "bench", client_auth = "trust" }]
pool = { max_size = $pool }
routing = { read_write_split = false }
CONF
read -r -a wrap <<<"${WRAP:-}"
(cd "$out" && RUST_LOG=warn exec "${wrap[@]}" "$switchyard_bin" \
  run --config "$out/switchyard.toml" >"$out/switchyard.log" 2>&1) &
pids+=($!)
switchyard_pid=$!

pg_start_pgbouncer "$p_bouncer" trust "$pool" $((n + 100)) '"bench" ""'

wait_pg switchyard "$p_switchyard"
wait_pg pgbouncer "$p_bouncer"
# The process whose RSS counts: under WRAP, Switchyard is the wrapper's child.
sy_pid=$switchyard_pid
if [ -n "${WRAP:-}" ]; then
  sy_pid=$(pgrep -P "$switchyard_pid" -f "$switchyard_bin" | head -1 || echo "$switchyard_pid")
  wrapped=$(pgrep -P "$sy_pid" -f "$switchyard_bin" | head -1 || true)
  [ -n "$wrapped" ] && sy_pid=$wrapped
  # Stopped first, so that the wrapper sees it end (and writes its profile).
  pids=("$sy_pid" "${pids[@]}")
fi
declare -A pid=([switchyard]=$sy_pid [pgbouncer]=$(cat "$work/pgbouncer.pid"))
declare -A port=([switchyard]=$p_switchyard [pgbouncer]=$p_bouncer)
args=()
for t in $targets; do args+=("$t:${pid[$t]}:${port[$t]}"); done

echo "PostgreSQL $("$pgbin/postgres" --version | awk '{ print $3 }'), PgBouncer $bouncer_version, switchyard ${SWITCHYARD_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- dbrouter || echo '+changes')}; $(nproc) cores; N=$n, pool $pool; router workers ${SWITCHYARD_PG_WORKERS:-default}" | tee "$out/table.txt"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/table.txt"
python3 - "$n" "$settle" "${args[@]}" <<'PY' | tee -a "$out/table.txt"
import os, socket, struct, subprocess, sys, time

n, settle = int(sys.argv[1]), float(sys.argv[2])
targets = [a.split(":") for a in sys.argv[3:]]

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    except OSError:
        return 0

def settled(pid, wait=1.0):
    """RSS once it stops growing (the pooler has taken every client), at most 10 s."""
    last, deadline = rss_kb(pid), time.time() + 10
    while time.time() < deadline:
        time.sleep(wait)
        now = rss_kb(pid)
        if now <= last:
            return now
        last = now
    return last

STARTUP = b"".join(k + b"\0" + v + b"\0" for k, v in [
    (b"user", b"bench"), (b"database", b"bench"),
    (b"application_name", b"pg_conn_memory"), (b"client_encoding", b"UTF8"),
]) + b"\0"
STARTUP = struct.pack("!ii", 8 + len(STARTUP), 196608) + STARTUP
QUERY = b"select 1\0"
QUERY = b"Q" + struct.pack("!i", 4 + len(QUERY)) + QUERY

def until_ready(s, name):
    """Read messages up to ReadyForQuery; an ErrorResponse ends the run."""
    buf = b""
    while True:
        while len(buf) >= 5:
            tag, ln = buf[0:1], struct.unpack("!i", buf[1:5])[0]
            if len(buf) < 1 + ln:
                break
            body, buf = buf[5:1 + ln], buf[1 + ln:]
            if tag == b"E":
                raise SystemExit(f"{name}: error {body!r}")
            if tag == b"Z":
                return
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"{name}: connection closed")
        buf += chunk

def client(port, name):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(STARTUP)
    until_ready(s, name)
    s.sendall(QUERY)
    until_ready(s, name)
    return s

def bye(s):
    try:
        s.sendall(b"X\0\0\0\4")
    except OSError:
        pass
    s.close()

print(f"{'pooler':<11} {'baseline MB':>11} {'idle MB':>8} {'KB/idle client':>15} {'after close MB':>15} {'vs baseline':>12}")
for name, pid, port in targets:
    pid, port = int(pid), int(port)
    bye(client(port, name))
    base = settled(pid)
    idle = [client(port, name) for _ in range(n)]
    r1 = settled(pid)
    if os.environ.get("AT_IDLE"):
        subprocess.run(os.environ["AT_IDLE"], shell=True,
                       env={**os.environ, "POOLER": name, "POOLER_PID": str(pid)})
    for s in idle:
        bye(s)
    time.sleep(settle)
    r2 = rss_kb(pid)
    print(f"{name:<11} {base/1024:>11.1f} {r1/1024:>8.1f} {(r1-base)/n:>15.1f} {r2/1024:>15.1f} {100*(r2-base)/base:>+11.0f}%")
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/table.txt"
echo "configs and logs: $out"
