#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback: Switchyard vs nginx vs HAProxy.
#
# One origin (nginx, one worker, `return 200 "ok\n"`) and three proxies in front of it, each
# keeping keep-alive connections to the origin and balancing least-connections over it:
#   switchyard  release build, upstream with one pool of one backend, balance = "least_conn"
#   nginx       upstream { least_conn; keepalive 128; }, proxy_pass with HTTP/1.1
#   haproxy     mode http, balance leastconn, keep-alive and connection reuse to the server
# All three add X-Forwarded-For and use 2 worker threads/processes. wrk drives each in turn
# (rounds interleaved, order rotated each round) and the table gives the median over rounds
# of requests/s, p50 and p99 latency, and the ratio of requests/s to nginx. "origin" is wrk
# straight at the origin, as the ceiling.
#
# Everything listens on 127.0.0.1 ports picked free by the script, every run is bounded by
# `timeout`, and everything started is stopped on exit. The machine's cores are shared by
# wrk, the proxy under test and the origin: the figures compare proxies under the same
# squeeze, they are not any proxy's capacity on dedicated cores.
#
# Knobs (environment): DURATION (15, seconds per run), CONNS ("64 256"), THREADS (2, wrk
# threads), ROUNDS (3), WARMUP (3, seconds per proxy before each concurrency), OUT
# (target/bench-http/<time>: wrk outputs and configs are kept there), CARGO_TARGET_DIR
# (where the release build goes and the switchyard binary is taken from; default target),
# SWITCHYARD_BIN (a switchyard binary to use as is, instead of building one),
# SWITCHYARD_LISTENER (extra keys for Switchyard's listener, e.g. 'read_buffer_bytes = 65536'),
# ACCESS_LOG (`combined` or `json`: also run "switchyard-log", a second Switchyard identical to
# the first but writing an access log line per request to $OUT/access.log, and report what the
# log costs), TARGETS (the proxies to drive, default "switchyard nginx haproxy", plus
# switchyard-log with ACCESS_LOG; e.g. TARGETS="switchyard switchyard-log" for the log alone).
#
#   ACCESS_LOG=combined TARGETS="switchyard switchyard-log" ROUNDS=6 benches/http_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-15}
conns=${CONNS:-"64 256"}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
warmup=${WARMUP:-3}
out=${OUT:-target/bench-http/$(date -u +%Y%m%dT%H%M%SZ)}
access_log=${ACCESS_LOG:-}
case "$access_log" in "" | combined | json) ;; *) echo "ACCESS_LOG: combined or json" >&2; exit 2 ;; esac

# --- tools --------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Debian starts packaged daemons on install unless told not to; we start our own.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PATH=$PATH:/usr/sbin
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  switchyard_bin=$(realpath "$SWITCHYARD_BIN")
else
  scripts/install-deps.sh
  cargo build --release --bin switchyard
  switchyard_bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/switchyard
fi

# --- ports, files, cleanup ----------------------------------------------------------------
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Seven distinct free ports: all bound at once (port 0), then released for the servers.
read -r p_origin p_switchyard p_control p_nginx p_haproxy p_sylog p_sylog_control < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)

pids=()
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_http NAME PORT: until the server answers 200 on /, at most 20 s.
wait_http() {
  local deadline=$((SECONDS + 20))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/" || true)" = 200 ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "bench: $1 on :$2 does not answer 200; its log is in $out" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# nginx's scratch paths, kept in the run directory.
nginx_http_paths() {
  local d=$out/nginx-$1
  for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $d/$t;"; done
}

# --- origin -------------------------------------------------------------------------------
cat >"$out/origin.conf" <<CONF
worker_processes 1;
daemon off;
pid $out/nginx-origin.pid;
error_log $out/nginx-origin.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_paths origin)
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$p_origin;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
CONF
mkdir -p "$out/nginx-origin"
nginx -p "$out" -e "$out/nginx-origin.log" -c "$out/origin.conf" &
pids+=($!)
declare -A pid=([origin]=$!)

# --- switchyard ---------------------------------------------------------------------------
# start_switchyard NAME PORT CONTROL_PORT LISTENER_KEYS: one Switchyard in front of the origin.
# The viewer token "bench" reads its /metrics at the end.
bench_token_sha256=$(printf bench | sha256sum | cut -d' ' -f1)
start_switchyard() {
  mkdir -p "$out/$1"
  cat >"$out/$1/switchyard.toml" <<CONF
[control]
listen = "127.0.0.1:$3"
audit_log = "audit.jsonl"
tokens = [{ name = "bench", role = "viewer", sha256 = "$bench_token_sha256" }]

[[http.listeners]]
name = "bench"
addr = "127.0.0.1:$2"
${SWITCHYARD_LISTENER:-}
$4

[[http.routes]]
upstream = "origin"

[http.upstreams.origin]
balance = "least_conn"

[http.upstreams.origin.pools.main]
backends = ["127.0.0.1:$p_origin"]
CONF
  RUST_LOG=warn "$switchyard_bin" run --config "$out/$1/switchyard.toml" \
    >"$out/$1.log" 2>&1 &
  pids+=($!)
  pid[$1]=$!
}
start_switchyard switchyard "$p_switchyard" "$p_control" ""
if [ -n "$access_log" ]; then
  start_switchyard switchyard-log "$p_sylog" "$p_sylog_control" \
    "access_log = { format = \"$access_log\", path = \"$out/access.log\" }"
fi

# --- nginx proxy --------------------------------------------------------------------------
cat >"$out/nginx-proxy.conf" <<CONF
worker_processes 2;
daemon off;
pid $out/nginx-proxy.pid;
error_log $out/nginx-proxy.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_paths proxy)
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    upstream origin {
        least_conn;
        server 127.0.0.1:$p_origin;
        keepalive 128;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$p_nginx;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
mkdir -p "$out/nginx-proxy"
nginx -p "$out" -e "$out/nginx-proxy.log" -c "$out/nginx-proxy.conf" &
pids+=($!)
pid[nginx]=$!

# --- haproxy ------------------------------------------------------------------------------
cat >"$out/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 120s

frontend bench
    bind 127.0.0.1:$p_haproxy
    default_backend origin

backend origin
    balance leastconn
    server origin 127.0.0.1:$p_origin
CONF
haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)
pid[haproxy]=$!

wait_http origin "$p_origin"
wait_http switchyard "$p_switchyard"
wait_http nginx "$p_nginx"
wait_http haproxy "$p_haproxy"
[ -z "$access_log" ] || wait_http switchyard-log "$p_sylog"
declare -A port=([origin]=$p_origin [switchyard]=$p_switchyard [nginx]=$p_nginx [haproxy]=$p_haproxy [switchyard-log]=$p_sylog)
default_targets="switchyard nginx haproxy${access_log:+ switchyard-log}"
read -r -a targets <<<"${TARGETS:-$default_targets}"
for t in "${targets[@]}"; do
  [ -n "${port[$t]:-}" ] && { [ "$t" != switchyard-log ] || [ -n "$access_log" ]; } ||
    { echo "TARGETS: unknown target $t (switchyard-log needs ACCESS_LOG)" >&2; exit 2; }
done
# The "vs" column: requests/s against nginx, or against the first target without nginx.
ref=${targets[0]}
for t in "${targets[@]}"; do [ "$t" != nginx ] || ref=nginx; done

# --- runs ---------------------------------------------------------------------------------
# cpu_ticks PID: user + system CPU time of PID and its children (nginx's workers), in ticks.
cpu_ticks() {
  local p total=0
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# run_wrk TARGET CONNS SECONDS FILE: wrk's output, then a line "cpu_ticks N" for the server
# under test (the proxy, or the origin itself for "origin").
run_wrk() {
  local before
  before=$(cpu_ticks "${pid[$1]}")
  timeout $(($3 + 30)) wrk -t"$threads" -c"$2" -d"$3s" --latency "http://127.0.0.1:${port[$1]}/" >"$4"
  echo "cpu_ticks $(($(cpu_ticks "${pid[$1]}") - before))" >>"$4"
}

echo "bench: load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "bench: $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), wrk -t$threads -d${duration}s, connections: $conns, $rounds rounds, targets: ${targets[*]}${access_log:+, access log $access_log}; outputs in $out"
n_targets=${#targets[@]}
for c in $conns; do
  for t in origin "${targets[@]}"; do run_wrk "$t" "$c" "$warmup" /dev/null; done
  for r in $(seq "$rounds"); do
    # Rotate the order each round so no proxy always runs first (or right after the warm-up).
    order=("${targets[@]:$(((r - 1) % n_targets))}" "${targets[@]:0:$(((r - 1) % n_targets))}")
    for t in origin "${order[@]}"; do
      f="$out/wrk-$t-c$c-r$r.txt"
      run_wrk "$t" "$c" "$duration" "$f"
      printf '  c=%-4s round %s %-10s %10s req/s\n' "$c" "$r" "$t" \
        "$(awk '/^Requests\/sec/ {print $2}' "$f")"
    done
  done
done

# --- table --------------------------------------------------------------------------------
# One line per wrk output: req/s, p50 ms, p99 ms, errors (socket errors + non-2xx), and the
# server's CPU time per request in microseconds.
summarize() {
  awk -v tck="$clk_tck" '
    function ms(v) {
      if (v ~ /us$/) return v * 0.001; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000
      return v
    }
    /^Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Socket errors/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
    /Non-2xx/ { errs += $NF }
    / requests in / { n = $1 }
    $1 == "cpu_ticks" { cpu = $2 * 1e6 / tck / n }
    END { printf "%s %.3f %.3f %d %.1f\n", rps, p50, p99, errs, cpu }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
{
  printf '%-14s %6s %10s %8s %8s %9s %11s %7s\n' \
    target conns "req/s" "p50 ms" "p99 ms" "vs $ref" "CPU us/req" errors
  for c in $conns; do
    declare -A rps=()
    for t in origin "${targets[@]}"; do
      for r in $(seq "$rounds"); do summarize "$out/wrk-$t-c$c-r$r.txt"; done >"$out/summary-$t-c$c.txt"
      rps[$t]=$(cut -d' ' -f1 "$out/summary-$t-c$c.txt" | median)
    done
    for t in origin "${targets[@]}"; do
      s=$out/summary-$t-c$c.txt
      printf '%-14s %6s %10.0f %8.3f %8.3f %9.2f %11.1f %7d\n' "$t" "$c" "${rps[$t]}" \
        "$(cut -d' ' -f2 "$s" | median)" "$(cut -d' ' -f3 "$s" | median)" \
        "$(awk -v a="${rps[$t]}" -v b="${rps[$ref]}" 'BEGIN { print a / b }')" \
        "$(cut -d' ' -f5 "$s" | median)" "$(awk '{ e += $4 } END { print e + 0 }' "$s")"
    done
    if [ -n "${rps[switchyard-log]:-}" ] && [ -n "${rps[switchyard]:-}" ]; then
      cpu_on=$(cut -d' ' -f5 "$out/summary-switchyard-log-c$c.txt" | median)
      cpu_off=$(cut -d' ' -f5 "$out/summary-switchyard-c$c.txt" | median)
      awk -v c="$c" -v on="${rps[switchyard-log]}" -v off="${rps[switchyard]}" \
        -v con="$cpu_on" -v coff="$cpu_off" -v fmt="$access_log" 'BEGIN {
          printf "access log (%s) at c=%s: %+.1f%% req/s, %+.1f%% CPU us/req (medians, on vs off)\n",
            fmt, c, (on / off - 1) * 100, (con / coff - 1) * 100 }'
    fi
  done
} | tee "$out/table.txt"
if [ -n "$access_log" ]; then
  echo "access log: $(wc -l <"$out/access.log") lines, $(du -h "$out/access.log" | cut -f1) in $out/access.log; its series:"
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$p_sylog_control/metrics" |
    grep '^switchyard_http_access_log_' || echo "  (none: nothing written or dropped yet)"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(medians over $rounds rounds of ${duration}s; CPU us/req is the server under test's own"
echo " CPU time (the proxy; for \"origin\" the origin); errors summed over rounds; raw output in $out)"
