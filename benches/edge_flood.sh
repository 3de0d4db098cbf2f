#!/usr/bin/env bash
# A crowd at the edge, side by side: Switchyard vs nginx vs HAProxy, in one run (issue 14's
# "must show": with 10,000 idle keep-alive connections and 1,000 slow-header clients open, a
# new client's request is still answered in under 100 ms, and RSS stays within 4 KB per
# connection).
#
# One origin (nginx, one worker, `return 200 "ok\n"`) and three proxies in front of it, 2
# workers/threads each, with the same client deadlines: the whole request head within
# HEADER_TIMEOUT, a keep-alive connection closed after KEEPALIVE_TIMEOUT idle (Switchyard's
# defaults, 30 s and 75 s; Switchyard runs on its defaults unless these are set). For each
# proxy in turn, benches/edge_flood.py opens IDLE idle keep-alive connections (one GET each,
# answer read), then SLOW clients sending a head one byte a second, times PROBES new
# clients' requests with everything open, waits until the proxy has closed the slow clients
# (at most SLOW_WAIT seconds after they opened), times PROBES requests again, and closes all.
# RSS is the sum of VmRSS over the proxy's processes, from /proc.
#
# Knobs (environment): IDLE (10000), SLOW (1000), PROBES (50), SLOW_WAIT (45, seconds; keep
# it longer than HEADER_TIMEOUT and, with the idle opening time, shorter than
# KEEPALIVE_TIMEOUT), SETTLE (5), HEADER_TIMEOUT (30), KEEPALIVE_TIMEOUT (75), TARGETS
# ("switchyard nginx haproxy"), OUT (target/bench-flood/<time>), SWITCHYARD_BIN (a switchyard
# binary to use as is; else target/release/switchyard is built), SWITCHYARD_LISTENER (extra
# keys for Switchyard's listener).
#
#   SWITCHYARD_BIN=target/release/switchyard nice -n 10 benches/edge_flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."

idle=${IDLE:-10000}
slow=${SLOW:-1000}
probes=${PROBES:-50}
slow_wait=${SLOW_WAIT:-45}
settle=${SETTLE:-5}
header_timeout=${HEADER_TIMEOUT:-30}
keepalive_timeout=${KEEPALIVE_TIMEOUT:-75}
read -r -a targets <<<"${TARGETS:-switchyard nginx haproxy}"
out=${OUT:-target/bench-flood/$(date -u +%Y%m%dT%H%M%SZ)}

. benches/lib/http.sh
http_tools
# IDLE + SLOW client sockets in the client, as many in the proxy: raise the soft limit to the
# hard one, and check it is enough.
ulimit -n "$(ulimit -Hn)"
need_fds=$((idle + slow + 1000))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
  echo "bench: open-file limit $(ulimit -n) is too low for IDLE=$idle SLOW=$slow (needs $need_fds)" >&2
  exit 1
fi
http_run_dir
read -r p_origin p_switchyard p_control p_nginx p_haproxy < <(free_ports 5)
start_origin "$p_origin"
declare -A pid port=([switchyard]=$p_switchyard [nginx]=$p_nginx [haproxy]=$p_haproxy)

switchyard_timeouts=""
[ -z "${HEADER_TIMEOUT:-}" ] || switchyard_timeouts+="header_timeout = \"${header_timeout}s\""$'\n'
[ -z "${KEEPALIVE_TIMEOUT:-}" ] || switchyard_timeouts+="keepalive_timeout = \"${keepalive_timeout}s\""
start_switchyard switchyard "$p_switchyard" "$p_control" "$switchyard_timeouts" ""
pid[switchyard]=$switchyard_pid

start_nginx_proxy "$p_nginx" "$need_fds" "    client_header_timeout ${header_timeout}s;
    keepalive_timeout ${keepalive_timeout}s;" "" ""
pid[nginx]=$nginx_pid
# HAProxy wants two files per connection of maxconn and, past the hard limit, refuses to
# start (strict-limits); the client connections here share a few to the origin (http-reuse
# always), so one file each is what they take: let it start under the hard limit.
start_haproxy "$p_haproxy" "$need_fds" "    no strict-limits" "    timeout client $((keepalive_timeout + 60))s
    timeout http-request ${header_timeout}s
    timeout http-keep-alive ${keepalive_timeout}s" "" ""
pid[haproxy]=$haproxy_pid

wait_http origin "$p_origin"
for t in "${targets[@]}"; do
  [ -n "${port[$t]:-}" ] || { echo "TARGETS: switchyard, nginx or haproxy, not $t" >&2; exit 2; }
  wait_http "$t" "${port[$t]}"
done

echo "bench: load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores;" \
  "IDLE=$idle SLOW=$slow PROBES=$probes, head deadline ${header_timeout}s, keep-alive" \
  "${keepalive_timeout}s; open files $(ulimit -n); outputs in $out"
for t in "${targets[@]}"; do
  python3 benches/edge_flood.py --name "$t" --port "${port[$t]}" --pid "${pid[$t]}" \
    --idle "$idle" --slow "$slow" --probes "$probes" --slow-wait "$slow_wait" \
    --settle "$settle" | tee "$out/flood-$t.txt"
  if [ "$t" = switchyard ]; then
    echo "  its counters:"
    curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$p_control/metrics" |
      grep -E '^switchyard_http_(client_timeouts_total|connections_refused_total|client_connections)' |
      sed 's/^/    /' | tee -a "$out/flood-$t.txt" || echo "    (none)"
  fi
  echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo
{
  printf '%-11s %7s %8s %8s %8s %9s %8s %8s %6s %11s %7s %6s %9s %6s\n' proxy "base MB" \
    "KB/idle" "KB/slow" "peak MB" "p50 ms" "p99 ms" "max ms" failed "slow closed" "at s" \
    "idle x" "after MB" "vs base"
  for t in "${targets[@]}"; do
    sed -n 's/^result //p' "$out/flood-$t.txt" | awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%-11s %7s %8s %8s %8s %9s %8s %8s %6s %11s %7s %6s %9s %6s\n", v["name"], v["base"],
        v["idle_kb"], v["slow_kb"], v["peak"], v["p50"], v["p99"], v["max"], v["failed"],
        v["slow_closed"], v["slow_closed_s"], v["idle_closed"], v["end"], v["vs_base"] }'
  done
} | tee "$out/table.txt"
echo "(p50/p99/max: $probes new clients' requests with the crowd open; slow closed: by the"
echo " proxy within ${slow_wait}s of opening, median seconds after connect; idle x: idle"
echo " keep-alive connections the proxy closed during the run)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
