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
# mapped, so it includes what the allocator keeps after a free. The crowd of the issue (10,000
# idle and 1,000 slow-header clients, and a new client's latency) is benches/edge_flood.sh.
#
# Knobs (environment): N (2000), SETTLE (3, seconds after close), PACE ("B:S": in step 3,
# sleep S seconds after every B connections, so that a proxy that frees a connection's
# buffers after a short idle (Switchyard's hyper engine: 100 ms) has done so before the next
# batch; empty: no pauses, the figure is then the burst's peak), OUT
# (target/bench-mem/<time>), SWITCHYARD_BIN (a switchyard binary to use as is; else
# target/release/switchyard is built), SWITCHYARD_LISTENER (extra keys for Switchyard's
# listener, e.g. 'read_buffer_bytes = 65536'), REFS_DIR (a directory holding the reference proxies of
# benches/refs, `cargo build --release -p switchyard-bench-refs`: ref-pingora, ref-hyper and
# ref-h1loop join the table, 2 threads each; h1loop without pingora's read buffer, like
# Switchyard in the clear, pingora with pingora's default 64 KiB).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${N:-2000}
settle=${SETTLE:-3}
out=${OUT:-target/bench-mem/$(date -u +%Y%m%dT%H%M%SZ)}
. benches/lib/http.sh
http_tools
# 2N client sockets here, as many in each proxy (and its origin side): raise the soft limit
# to the hard one, and check it is enough.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((2 * n + 1000)) ]; then
  echo "bench: open-file limit $(ulimit -n) is too low for N=$n" >&2
  exit 1
fi
http_run_dir
read -r p_origin p_switchyard p_control p_nginx p_haproxy p_pingora p_hyper p_h1loop < <(free_ports 8)
start_origin "$p_origin"

start_switchyard switchyard "$p_switchyard" "$p_control" "header_timeout = \"60s\"
keepalive_timeout = \"120s\"" ""
declare -A pid=([switchyard]=$switchyard_pid)

start_nginx_proxy "$p_nginx" 16384 "    client_header_timeout 60s;
    keepalive_timeout 120s;" "" ""
pid[nginx]=$nginx_pid
start_haproxy "$p_haproxy" $((2 * n + 1000)) "" "    timeout client 120s
    timeout http-request 60s
    timeout http-keep-alive 120s" "" ""
pid[haproxy]=$haproxy_pid

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
python3 - "$n" "$settle" "${PACE:-}" "${mem_targets[@]}" <<'PY' | tee "$out/table.txt"
import socket, sys, time
sys.path.insert(0, "benches/lib")
from proc_rss import rss_kb, settled_rss as settled

n, settle = int(sys.argv[1]), float(sys.argv[2])
pace_n, pace_s = (int(sys.argv[3].split(":")[0]), float(sys.argv[3].split(":")[1])) if sys.argv[3] else (0, 0.0)
targets = [a.split(":") for a in sys.argv[4:]]

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
    for i in range(n):
        s = connect(port)
        s.sendall(GET)
        got = b""
        while b"ok\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"{name}: connection closed before the answer")
            got += chunk
        alive.append(s)
        if pace_n and (i + 1) % pace_n == 0:
            time.sleep(pace_s)
    r2 = settled(pid)
    for s in silent + alive:
        s.close()
    time.sleep(settle)
    r3 = rss_kb(pid)
    print(f"{name:<11} {base/1024:>11.1f} {(r1-base)/n:>14.1f} {(r2-r1)/n:>19.1f} {r3/1024:>15.1f} {100*(r3-base)/base:>+11.0f}%")
PY

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
