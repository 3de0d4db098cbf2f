#!/usr/bin/env bash
# Memory per client connection, side by side: Switchyard vs nginx vs HAProxy, in one run.
#
# One origin (nginx, one worker, `return 200 "ok\n"`) and three proxies in front of it (2
# workers/threads each). For each proxy in turn, a client (python, in this script):
#   1. reads the proxy's RSS (the sum over its processes, from /proc/PID/status), the baseline;
#   2. opens N connections that never send a byte, waits until the proxy holds them, reads RSS;
#   3. opens N more, sends one GET on each, reads the answer, keeps them open (idle
#      keep-alive), reads RSS;
#   4. closes all 2N, waits SETTLE seconds, reads RSS.
# It prints KB per never-sent connection ((2) - (1)) / N, KB per idle keep-alive connection
# ((3) - (2)) / N, and the RSS after close against the baseline. RSS is what the kernel has
# mapped, so it includes what the allocator keeps after a free.
#
# Knobs (environment): N (2000), SETTLE (3, seconds after close), OUT
# (target/bench-mem/<time>), SWITCHYARD_BIN (a switchyard binary to use as is; else
# target/release/switchyard is built), SWITCHYARD_LISTENER (extra keys for Switchyard's
# listener, e.g. 'read_buffer_bytes = 65536'), IDLE (10000) and SLOW (1000): the crowd of the
# last step (IDLE=0 skips it), REFS_DIR (a directory holding the reference proxies of
# benches/refs, `cargo build --release -p switchyard-bench-refs`: ref-pingora, ref-hyper and
# ref-h1loop join the table, 2 threads each; h1loop without pingora's read buffer, like
# Switchyard in the clear, pingora with pingora's default 64 KiB).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${N:-2000}
settle=${SETTLE:-3}
out=${OUT:-target/bench-mem/$(date -u +%Y%m%dT%H%M%SZ)}
PATH=$PATH:/usr/sbin
for tool in nginx haproxy python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  switchyard_bin=$(realpath "$SWITCHYARD_BIN")
else
  cargo build --release --bin switchyard
  switchyard_bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/switchyard
fi
# 2N client sockets here, as many in each proxy (and its origin side): raise the soft limit
# to the hard one, and check it is enough.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((2 * n + 1000)) ]; then
  echo "bench: open-file limit $(ulimit -n) is too low for N=$n" >&2
  exit 1
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
read -r p_origin p_switchyard p_control p_nginx p_haproxy p_pingora p_hyper p_h1loop < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
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

nginx_http_paths() {
  local d=$out/nginx-$1
  mkdir -p "$d"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $d/$t;"; done
}

cat >"$out/origin.conf" <<CONF
worker_processes 1;
daemon off;
pid $out/nginx-origin.pid;
error_log $out/nginx-origin.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 16384; }
http {
$(nginx_http_paths origin)
    access_log off;
    server {
        listen 127.0.0.1:$p_origin backlog=8192;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
CONF
nginx -p "$out" -e "$out/nginx-origin.log" -c "$out/origin.conf" &
pids+=($!)

cat >"$out/switchyard.toml" <<CONF
[control]
listen = "127.0.0.1:$p_control"
audit_log = "audit.jsonl"

[[http.listeners]]
name = "bench"
addr = "127.0.0.1:$p_switchyard"
header_timeout = "60s"
keepalive_timeout = "120s"
${SWITCHYARD_LISTENER:-}

[[http.routes]]
upstream = "origin"

[http.upstreams.origin.pools.main]
backends = ["127.0.0.1:$p_origin"]
CONF
RUST_LOG=warn "$switchyard_bin" run --config "$out/switchyard.toml" >"$out/switchyard.log" 2>&1 &
pids+=($!)
declare -A pid=([switchyard]=$!)

cat >"$out/nginx-proxy.conf" <<CONF
worker_processes 2;
daemon off;
pid $out/nginx-proxy.pid;
error_log $out/nginx-proxy.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 16384; }
http {
$(nginx_http_paths proxy)
    access_log off;
    client_header_timeout 60s;
    keepalive_timeout 120s;
    upstream origin {
        server 127.0.0.1:$p_origin;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$p_nginx backlog=8192;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
nginx -p "$out" -e "$out/nginx-proxy.log" -c "$out/nginx-proxy.conf" &
pids+=($!)
pid[nginx]=$!

cat >"$out/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn $((2 * n + 1000))

defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 3s
    timeout client 120s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 120s

frontend bench
    bind 127.0.0.1:$p_haproxy
    default_backend origin

backend origin
    server origin 127.0.0.1:$p_origin
CONF
haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)
pid[haproxy]=$!

mem_targets=("switchyard:${pid[switchyard]}:$p_switchyard" "nginx:${pid[nginx]}:$p_nginx"
  "haproxy:${pid[haproxy]}:$p_haproxy")
if [ -n "${REFS_DIR:-}" ]; then
  declare -A ref_port=([pingora]=$p_pingora [hyper]=$p_hyper [h1loop]=$p_h1loop)
  declare -A ref_extra=([pingora]="" [hyper]="" [h1loop]="--read-buffer 0")
  for t in pingora hyper h1loop; do
    # shellcheck disable=SC2086 # ref_extra holds separate words
    "$REFS_DIR/ref-$t" --listen "127.0.0.1:${ref_port[$t]}" --upstream "127.0.0.1:$p_origin" \
      --threads 2 ${ref_extra[$t]} >"$out/ref-$t.log" 2>&1 &
    pids+=($!)
    mem_targets+=("$t:$!:${ref_port[$t]}")
  done
fi
wait_http origin "$p_origin"
for t in "${mem_targets[@]}"; do wait_http "${t%%:*}" "${t##*:}"; done

echo "bench: load average at start: $(cut -d' ' -f1-3 /proc/loadavg); N=$n; outputs in $out"
python3 - "$n" "$settle" "${mem_targets[@]}" <<'PY' | tee "$out/table.txt"
import os, socket, sys, time

n, settle = int(sys.argv[1]), float(sys.argv[2])
targets = [a.split(":") for a in sys.argv[3:]]

def tree(pid):
    """pid and its children (nginx's workers)."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out

def rss_kb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total

def settled(pid, wait=1.0):
    """RSS once it stops growing (the proxy has taken every connection), at most 10 s."""
    last, deadline = rss_kb(pid), time.time() + 10
    while time.time() < deadline:
        time.sleep(wait)
        now = rss_kb(pid)
        if now <= last:
            return now
        last = now
    return last

def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
print(f"{'proxy':<11} {'baseline MB':>11} {'KB/never-sent':>14} {'KB/idle keep-alive':>19} {'after close MB':>15} {'vs baseline':>12}")
for name, pid, port in targets:
    pid, port = int(pid), int(port)
    base = settled(pid)
    silent = [connect(port) for _ in range(n)]
    r1 = settled(pid)
    alive = []
    for _ in range(n):
        s = connect(port)
        s.sendall(GET)
        got = b""
        while b"ok\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"{name}: connection closed before the answer")
            got += chunk
        alive.append(s)
    r2 = settled(pid)
    for s in silent + alive:
        s.close()
    time.sleep(settle)
    r3 = rss_kb(pid)
    print(f"{name:<11} {base/1024:>11.1f} {(r1-base)/n:>14.1f} {(r2-r1)/n:>19.1f} {r3/1024:>15.1f} {100*(r3-base)/base:>+11.0f}%")
PY

# --- crowd: IDLE idle keep-alive + SLOW slow-header connections, then a new client --------
# The issue's "must show": with 10,000 idle keep-alive connections and 1,000 clients that
# sent part of a head, a new client's request is still answered in well under 100 ms.
# Switchyard only (HAProxy's maxconn is bounded by the open-file limit here).
idle=${IDLE:-10000}
slow=${SLOW:-1000}
if [ "$(ulimit -n)" -ge $((idle + slow + 500)) ] && [ "$idle" -gt 0 ]; then
  python3 - "$idle" "$slow" "${pid[switchyard]}" "$p_switchyard" <<'PY' | tee -a "$out/table.txt"
import socket, sys, time
idle, slow, pid, port = (int(a) for a in sys.argv[1:])
def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
def request(s):
    s.sendall(GET)
    got = b""
    while b"ok\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed before the answer")
        got += chunk
base = rss_mb()
held = []
for _ in range(idle):
    s = socket.create_connection(("127.0.0.1", port))
    request(s)
    held.append(s)
for _ in range(slow):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
    held.append(s)
time.sleep(1)
times = []
for _ in range(20):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    request(s)
    times.append((time.perf_counter() - t) * 1000)
    s.close()
times.sort()
print(f"switchyard with {idle} idle keep-alive + {slow} slow-header connections: "
      f"RSS {base:.1f} -> {rss_mb():.1f} MB, new client's request "
      f"median {times[len(times)//2]:.2f} ms, max {times[-1]:.2f} ms (20 requests)")
for s in held:
    s.close()
PY
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
